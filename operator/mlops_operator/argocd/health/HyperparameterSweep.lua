-- mlops.dev HyperparameterSweep: Healthy when it Succeeded (trials done or goal reached),
-- Degraded when it Failed or is Stalled (too many failed trials, invalid spec), Suspended when suspended,
-- Progressing while trials run.
local waiting = pending_observation()
if waiting ~= nil then return waiting end
local status = obj.status
local phase = status.phase

local function best()
  local b = status.bestTrial
  if b == nil or b.objectiveValue == nil then return "" end
  local metric = "objective"
  if obj.spec ~= nil and obj.spec.objective ~= nil and obj.spec.objective.metric ~= nil then
    metric = obj.spec.objective.metric
  end
  return ", best " .. metric .. " = " .. num(b.objectiveValue) .. " (" .. tostring(b.name) .. ")"
end

local function progress()
  if status.progress ~= nil then return " " .. status.progress .. " trials" end
  return ""
end

if phase == "Failed" or is_true(status, "Failed") or stalled(status) ~= nil then
  hs.status = "Degraded"
  hs.message = explain(status, "Failed", stalled(status) or "The sweep failed") .. best()
  return hs
end
if phase == "Succeeded" or phase == "Completed" or is_true(status, "Succeeded") then
  hs.status = "Healthy"
  hs.message = "Succeeded:" .. progress() .. best()
  return hs
end
if phase == "Suspended" or is_true(status, "Suspended") then
  hs.status = "Suspended"
  hs.message = "Suspended:" .. progress() .. best()
  return hs
end
hs.status = "Progressing"
hs.message = (phase or "Pending") .. ":" .. progress() .. best()
return hs
