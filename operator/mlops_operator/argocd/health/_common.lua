-- Shared prelude of the mlops.dev health checks (prepended to each kind's script when it is
-- installed: Argo CD runs one self-contained script per kind, in gopher-lua, i.e. Lua 5.1).
local hs = {}

local function condition(status, kind)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function is_true(status, kind)
  local c = condition(status, kind)
  return c ~= nil and c.status == "True"
end

-- "Reason: message" from the status, or from a condition, or the fallback.
local function explain(status, kind, fallback)
  local reason, message = status.reason, status.message
  local c = condition(status, kind)
  if c ~= nil then
    if reason == nil or reason == "" then reason = c.reason end
    if message == nil or message == "" then message = c.message end
  end
  if reason ~= nil and reason ~= "" and message ~= nil and message ~= "" then
    return reason .. ": " .. message
  end
  if message ~= nil and message ~= "" then return message end
  if reason ~= nil and reason ~= "" then return reason end
  return fallback
end

-- Stalled (the kstatus condition every kind sets when it cannot proceed without a change to
-- its spec or its inputs): "Reason: message" when it is True, else nil.
local function stalled(status)
  local c = condition(status, "Stalled")
  if c == nil or c.status ~= "True" then return nil end
  if c.reason ~= nil and c.reason ~= "" and c.message ~= nil and c.message ~= "" then
    return c.reason .. ": " .. c.message
  end
  if c.message ~= nil and c.message ~= "" then return c.message end
  if c.reason ~= nil and c.reason ~= "" then return c.reason end
  return "Stalled"
end

local function num(v)
  if type(v) ~= "number" then return tostring(v) end
  return string.format("%.4g", v)
end

-- Nothing to judge until the operator has seen the current spec.
local function pending_observation()
  if obj.status == nil then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to reconcile"
    return hs
  end
  local generation = obj.metadata.generation
  local observed = obj.status.observedGeneration
  if generation ~= nil and (observed == nil or observed < generation) then
    hs.status = "Progressing"
    hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
    return hs
  end
  return nil
end
