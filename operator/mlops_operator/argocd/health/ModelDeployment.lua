-- mlops.dev ModelDeployment: Healthy when Ready with every desired pod ready (drift is reported in
-- the message, not as ill health: the service answers), Progressing while pods start, a canary is
-- judged or Reconciling is True (a new model still resolving), Degraded when it Failed, a canary
-- was rolled back or it is Stalled (the version in Git is not the one serving), Suspended when
-- archived (scaled to zero on purpose).
local waiting = pending_observation()
if waiting ~= nil then return waiting end
local status = obj.status
local phase = status.phase
local canary = status.canary
local ready_pods = status.readyReplicas or 0
local desired = status.desiredReplicas or 0

if phase == "Failed" or phase == "Degraded" or is_true(status, "Failed") then
  hs.status = "Degraded"
  hs.message = explain(status, "Failed", "The deployment failed")
  return hs
end
if canary ~= nil and canary.state == "RolledBack" then
  hs.status = "Degraded"
  local why = canary.message
  if why == nil or why == "" then why = "the canary did not meet its thresholds" end
  hs.message = "Canary rolled back: " .. why
  return hs
end
local stuck = stalled(status)
if stuck ~= nil then
  -- The stable model may still answer, but what the spec asks (a new model) cannot be reached.
  hs.status = "Degraded"
  hs.message = stuck
  return hs
end
if phase == "Archived" or (obj.spec ~= nil and obj.spec.stage == "archived") then
  hs.status = "Suspended"
  hs.message = "Archived: scaled to zero"
  return hs
end
local ready = condition(status, "Ready")
if ready ~= nil and ready.status == "True" and ready_pods >= desired then
  if canary ~= nil and canary.state == "Progressing" then
    hs.status = "Progressing"
    hs.message = "Canary in progress"
    if canary.trafficPercent ~= nil then
      hs.message = hs.message .. " at " .. num(canary.trafficPercent) .. "% of traffic"
    end
    return hs
  end
  local working = condition(status, "Reconciling")
  if working ~= nil and working.status == "True" then
    -- Serving, but not yet what the spec asks (a new model still resolving, a rollout).
    hs.status = "Progressing"
    hs.message = tostring(ready_pods) .. "/" .. tostring(desired) .. " replicas ready"
    if working.message ~= nil and working.message ~= "" then
      hs.message = hs.message .. ": " .. working.message
    end
    return hs
  end
  hs.status = "Healthy"
  hs.message = tostring(ready_pods) .. "/" .. tostring(desired) .. " replicas ready"
  if status.url ~= nil then hs.message = hs.message .. ", serving " .. status.url end
  if is_true(status, "DriftDetected") then
    local drift = status.drift
    local what = "drift detected"
    if drift ~= nil and drift.feature ~= nil and drift.score ~= nil then
      what = what .. " on " .. drift.feature .. " (PSI " .. num(drift.score) .. ")"
    end
    hs.message = hs.message .. "; " .. what
  end
  return hs
end
hs.status = "Progressing"
hs.message = tostring(ready_pods) .. "/" .. tostring(desired) .. " replicas ready"
if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
  hs.message = hs.message .. ": " .. ready.message
end
return hs
