-- One allocation against every window of a counter, charged to all of them
-- or to none: quota.Decide (adapters/internal/quota/store.go) in Lua. The
-- clock is the mixer's (ARGV[1]), never Redis's, so that every store and
-- every test agrees on time.
--
-- KEYS[1..n]  one hash per window: field = slot number, value = usage
-- KEYS[n+1]   the deduplication key, when deduplicating
-- ARGV        now (µs), amount, bestEffort (0|1), dedup TTL (ms, 0: none),
--             then per window: max, valid (µs), bucket (µs), slots
--
-- Usage charged in slot s counts while cur - s <= slots, cur being now's
-- slot (slots = 0: a fixed window). Each call goes by its own clock, so
-- that of all calls within one window the last to run has seen every
-- other: no window is ever over its max, whatever order calls from
-- several mixers arrive in. Returns {duplicate, granted,
-- validDuration (µs), limit, remaining, reset (µs)}.
local now = tonumber(ARGV[1])
local amount = tonumber(ARGV[2])
local best = ARGV[3] == '1'
local dedup = tonumber(ARGV[4])
local nw = (#ARGV - 4) / 4
local dkey = nil
if dedup > 0 then dkey = KEYS[nw + 1] end

if dkey then
  local prev = redis.call('GET', dkey)
  if prev then
    local r = {1}
    for x in string.gmatch(prev, '[^,]+') do r[#r + 1] = tonumber(x) end
    return r
  end
end

local w = {}
for i = 1, nw do
  local a = 4 + (i - 1) * 4
  local win = {max = tonumber(ARGV[a + 1]), valid = tonumber(ARGV[a + 2]),
               bucket = tonumber(ARGV[a + 3]), n = tonumber(ARGV[a + 4]),
               used = 0, live = {}}
  win.cur = math.floor(now / win.bucket)
  local h = redis.call('HGETALL', KEYS[i])
  local dead = {}
  for j = 1, #h, 2 do
    local s, c = tonumber(h[j]), tonumber(h[j + 1])
    if win.cur - s <= win.n then
      -- A slot ahead of cur (a mixer whose clock runs ahead, or a call
      -- that overtook this one) counts too: it only holds usage longer.
      win.used = win.used + c
      win.live[#win.live + 1] = {s, c}
    elseif win.cur - s > 2 * win.n + 1 then
      -- Dead for a whole window more: a call carrying an older clock
      -- (up to a window behind) still sees the slots it must count.
      dead[#dead + 1] = h[j]
    end
  end
  if #dead > 0 then redis.call('HDEL', KEYS[i], unpack(dead)) end
  table.sort(win.live, function(x, y) return x[1] < y[1] end)
  win.left = math.max(win.max - win.used, 0)
  w[i] = win
end

local function expiry(win, s) return (s + win.n + 1) * win.bucket end

-- when at least need units of the window's usage have left it
local function freedAt(win, need)
  local freed = 0
  for _, e in ipairs(win.live) do
    freed = freed + e[2]
    if freed >= need then return expiry(win, e[1]) end
  end
  return nil
end

local minLeft, valid = math.huge, math.huge
for i = 1, nw do
  minLeft = math.min(minLeft, w[i].left)
  valid = math.min(valid, w[i].valid)
end
local granted = amount
if amount > minLeft then
  granted = 0
  if best then granted = minLeft end
end

local r
if granted > 0 or amount == 0 then
  local t, tleft = 1, math.huge
  for i = 1, nw do
    if w[i].left - granted < tleft then t, tleft = i, w[i].left - granted end
  end
  local reset = expiry(w[t], w[t].cur)
  if w[t].used > 0 then reset = freedAt(w[t], 1) end
  if granted > 0 then
    for i = 1, nw do
      redis.call('HINCRBY', KEYS[i], string.format('%d', w[i].cur), granted)
      -- A window longer than the slot needs, for the same reason.
      redis.call('PEXPIRE', KEYS[i], math.ceil((expiry(w[i], w[i].cur) + w[i].valid - now) / 1000))
    end
  end
  r = {granted, valid, w[t].max, tleft, math.max(reset - now, 1)}
else
  local want = amount
  if best then want = 1 end
  local t, retry = 1, 0
  for i = 1, nw do
    local need = w[i].used + want - w[i].max
    if need > 0 then
      local d = w[i].valid
      if want <= w[i].max then
        local at = freedAt(w[i], need)
        if at then d = math.max(at - now, 1) end
      end
      if d > retry then t, retry = i, d end
    end
  end
  r = {0, retry, w[t].max, w[t].left, retry}
end

if dkey then
  local parts = {}
  for i, x in ipairs(r) do parts[i] = string.format('%d', x) end
  redis.call('SET', dkey, table.concat(parts, ','), 'PX', dedup)
end
table.insert(r, 1, 0)
return r
