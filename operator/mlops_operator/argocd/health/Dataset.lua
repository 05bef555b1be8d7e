-- mlops.dev Dataset: Healthy when a prepared version is Ready, Degraded when preparation
-- failed (or it is Stalled), Progressing while it is Pending or Preparing (also while a new version is prepared).
local waiting = pending_observation()
if waiting ~= nil then return waiting end
local status = obj.status
local phase = status.phase
if phase == "Failed" or is_true(status, "Failed") or stalled(status) ~= nil then
  hs.status = "Degraded"
  hs.message = explain(status, "Failed", stalled(status) or "Preparation failed")
  return hs
end
if phase == "Ready" then
  hs.status = "Healthy"
  local parts = "Ready"
  if status.rows ~= nil and status.rows.output ~= nil then
    parts = parts .. ": " .. tostring(status.rows.output) .. " rows"
  end
  if status.digestShort ~= nil then
    parts = parts .. ", version " .. status.digestShort
  end
  hs.message = parts
  return hs
end
hs.status = "Progressing"
hs.message = (phase or "Pending") .. ": " .. explain(status, "Ready", "preparing the data")
return hs
