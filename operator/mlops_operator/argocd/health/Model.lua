-- mlops.dev Model (a registry of versions and the aliases that name them): Healthy when the operator
-- has reconciled it and every alias names a live version; a Model with no versions yet is Healthy
-- too (empty, not ill: the TrainingJobs that fill it have their own health). Degraded when it
-- Failed or is Stalled (an invalid spec, a version record the API refused), or when AliasesResolved
-- is False: an alias.mlops.dev/<alias> annotation was refused (not a version number, a version that
-- does not exist, too many aliases) or an alias names a deleted version; what Git asks is then not
-- what a ModelDeployment serving that alias gets. Progressing until the operator has seen the
-- generation, or while Reconciling is True. Never Suspended: a Model has nothing to suspend.
local waiting = pending_observation()
if waiting ~= nil then return waiting end
local status = obj.status
local phase = status.phase

-- "Reason: message" of a condition, or the fallback.
local function said(c, fallback)
  local text = c.message
  if text == nil or text == "" then text = fallback end
  if c.reason ~= nil and c.reason ~= "" then text = c.reason .. ": " .. text end
  return text
end

-- The phase and Stalled, not the Failed condition: every pass rewrites the phase (Ready) and
-- Stalled, while a Failed condition left by an earlier failure may outlive its cause.
if phase == "Failed" or stalled(status) ~= nil then
  hs.status = "Degraded"
  hs.message = explain(status, "Failed", stalled(status) or "The model registry failed")
  return hs
end
local aliases = condition(status, "AliasesResolved")
if aliases ~= nil and aliases.status == "False" then
  hs.status = "Degraded"
  hs.message = said(aliases, "an alias names no version")
  return hs
end
local working = condition(status, "Reconciling")
if working ~= nil and working.status == "True" then
  hs.status = "Progressing"
  hs.message = said(working, "registering versions")
  return hs
end

-- "3 versions, latest v3; aliases challenger v3, champion v2" (at most four aliases named).
local function summary()
  local count = status.versionCount or 0
  if count == 0 then return "no versions yet" end
  local out = tostring(count) .. " version"
  if count ~= 1 then out = out .. "s" end
  if status.latestVersion ~= nil then out = out .. ", latest v" .. tostring(status.latestVersion) end
  local named, more = {}, 0
  for _, a in ipairs(status.aliases or {}) do
    if #named < 4 then
      table.insert(named, tostring(a.name) .. " v" .. tostring(a.version))
    else
      more = more + 1
    end
  end
  if #named == 0 then return out .. "; no aliases" end
  out = out .. "; aliases " .. table.concat(named, ", ")
  if more > 0 then out = out .. " and " .. tostring(more) .. " more" end
  return out
end

if phase == "Ready" or is_true(status, "Ready") then
  hs.status = "Healthy"
  hs.message = "Ready: " .. summary()
  return hs
end
hs.status = "Progressing"
hs.message = (phase or "Pending") .. ": " .. explain(status, "Ready", "waiting for the operator")
return hs
