-- mlops.dev TrainingJob: Healthy when it Succeeded, Degraded when it Failed (or is Stalled), Suspended when
-- suspended (runPolicy.suspend), Progressing while Pending, WaitingForData, Queued or Running.
local waiting = pending_observation()
if waiting ~= nil then return waiting end
local status = obj.status
local phase = status.phase
if phase == "Failed" or is_true(status, "Failed") or stalled(status) ~= nil then
  hs.status = "Degraded"
  hs.message = explain(status, "Failed", stalled(status) or "Training failed")
  return hs
end
if phase == "Succeeded" or is_true(status, "Succeeded") then
  hs.status = "Healthy"
  hs.message = "Succeeded"
  if status.objectiveValue ~= nil then
    hs.message = hs.message .. ": " .. (status.objectiveMetric or "objective") .. " = " .. num(status.objectiveValue)
  end
  return hs
end
if phase == "Suspended" or is_true(status, "Suspended") then
  hs.status = "Suspended"
  hs.message = explain(status, "Suspended", "Suspended")
  return hs
end
hs.status = "Progressing"
hs.message = (phase or "Pending") .. ": " .. explain(status, "Running", "waiting to run")
return hs
