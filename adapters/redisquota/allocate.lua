-- A batch of allocations against one counter, run one after another as if
-- each were its own call: quota.Decide (adapters/internal/quota/store.go)
-- in Lua. Each allocation is charged to every window of the counter or to
-- none. The clock is the mixer's (one per allocation), never Redis's, so
-- that every store and every test agrees on time.
--
-- KEYS[1..n]  one hash per window: field = slot number, value = usage
-- KEYS[n+1..] the deduplication keys of the allocations that have one
-- ARGV        n, dedup TTL (ms, 0: none),
--             then per window: max, valid (µs), bucket (µs), slots,
--             then per allocation: now (µs), amount, bestEffort (0|1),
--             index of its deduplication key in KEYS (0: none), lease
--             (units to take beyond a whole grant, best effort: a mixer's
--             local lease; 0: none)
--
-- Usage charged in slot s counts while cur - s <= slots, cur being now's
-- slot (slots = 0: a fixed window). Each allocation goes by its own clock,
-- so that of all allocations within one window the last to run has seen
-- every other: no window is ever over its max, whatever order allocations
-- from several mixers arrive in. The windows are read once per batch and
-- written once at its end; in between the script keeps them in a table
-- exactly as the Redis commands of one call per allocation would have left
-- them. Returns, per allocation, {duplicate, granted, validDuration (µs),
-- limit, remaining, reset (µs), leased, stable (µs)}: leased is what the
-- lease took (charged like a grant; the answer's remaining is before it),
-- stable, on a denial, how long the answer stays the same if nothing is
-- charged (until the blocking window's usage first frees; 0: unknown).
local nw = tonumber(ARGV[1])
local dedup = tonumber(ARGV[2])
local first = 3 + nw * 4 -- first argument of the first allocation
local per = 5 -- arguments per allocation

local w = {}
for i = 1, nw do
  local a = 3 + (i - 1) * 4
  local win = {max = tonumber(ARGV[a]), valid = tonumber(ARGV[a + 1]),
               bucket = tonumber(ARGV[a + 2]), n = tonumber(ARGV[a + 3]),
               slots = {}, dirty = {}, dead = {}, pexpire = nil}
  local h = redis.call('HGETALL', KEYS[i])
  for j = 1, #h, 2 do win.slots[tonumber(h[j])] = tonumber(h[j + 1]) end
  w[i] = win
end

-- Earlier results of this batch's deduplication keys, and the stored ones.
local seen = {}
local stored = {}
if dedup > 0 and #KEYS > nw then
  local dk = {}
  for k = nw + 1, #KEYS do dk[#dk + 1] = KEYS[k] end
  local v = redis.call('MGET', unpack(dk))
  for k = nw + 1, #KEYS do
    if v[k - nw] then stored[KEYS[k]] = v[k - nw] end
  end
end

local function bySlot(x, y) return x[1] < y[1] end

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

-- One allocation, as one call of the script per allocation ran it.
local function allocate(now, amount, best, lease)
  for i = 1, nw do
    local win = w[i]
    win.cur = math.floor(now / win.bucket)
    win.used = 0
    win.live = {}
    for s, c in pairs(win.slots) do
      if win.cur - s <= win.n then
        -- A slot ahead of cur (a mixer whose clock runs ahead, or a call
        -- that overtook this one) counts too: it only holds usage longer.
        win.used = win.used + c
        win.live[#win.live + 1] = {s, c}
      elseif win.cur - s > 2 * win.n + 1 then
        -- Dead for a whole window more: a call carrying an older clock
        -- (up to a window behind) still sees the slots it must count.
        win.dead[s] = true
      end
    end
    for s in pairs(win.dead) do
      win.slots[s] = nil
      win.dirty[s] = nil
    end
    if #win.live > 1 then table.sort(win.live, bySlot) end
    win.left = math.max(win.max - win.used, 0)
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

  if granted > 0 or amount == 0 then
    local t, tleft = 1, math.huge
    for i = 1, nw do
      if w[i].left - granted < tleft then t, tleft = i, w[i].left - granted end
    end
    local reset = expiry(w[t], w[t].cur)
    if w[t].used > 0 then reset = freedAt(w[t], 1) end
    local leased = 0
    if lease > 0 and granted == amount and granted > 0 then
      leased = math.max(math.min(lease, minLeft - granted), 0)
    end
    local charge = granted + leased
    if charge > 0 then
      for i = 1, nw do
        local win = w[i]
        win.slots[win.cur] = (win.slots[win.cur] or 0) + charge
        win.dirty[win.cur] = true
        win.dead[win.cur] = nil
        -- A window longer than the slot needs, for the same reason.
        win.pexpire = math.ceil((expiry(win, win.cur) + win.valid - now) / 1000)
      end
    end
    return {granted, valid, w[t].max, tleft, math.max(reset - now, 1), leased, 0}
  end
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
  local stable = 0
  if want <= w[t].max then
    local at = freedAt(w[t], 1)
    if at then stable = math.max(at - now, 1) end
  end
  return {0, retry, w[t].max, w[t].left, retry, 0, stable}
end

local out = {}
local sets = {}
for a = first, #ARGV, per do
  local now, amount = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local best = ARGV[a + 2] == '1'
  local dkey = nil
  local di = tonumber(ARGV[a + 3])
  if dedup > 0 and di > 0 then dkey = KEYS[di] end
  local prev = nil
  if dkey then prev = seen[dkey] or stored[dkey] end
  if prev then
    out[#out + 1] = 1
    for x in string.gmatch(prev, '[^,]+') do out[#out + 1] = tonumber(x) end
    out[#out + 1] = 0
    out[#out + 1] = 0
  else
    local r = allocate(now, amount, best, tonumber(ARGV[a + 4]))
    out[#out + 1] = 0
    for _, x in ipairs(r) do out[#out + 1] = x end
    if dkey then
      local parts = {}
      for i = 1, 5 do parts[i] = string.format('%d', r[i]) end
      local v = table.concat(parts, ',')
      seen[dkey] = v
      sets[#sets + 1] = dkey
    end
  end
end

for i = 1, nw do
  local win = w[i]
  local dead = {}
  for s in pairs(win.dead) do dead[#dead + 1] = string.format('%d', s) end
  if #dead > 0 then redis.call('HDEL', KEYS[i], unpack(dead)) end
  for s in pairs(win.dirty) do
    redis.call('HSET', KEYS[i], string.format('%d', s), string.format('%d', win.slots[s]))
  end
  if win.pexpire then redis.call('PEXPIRE', KEYS[i], win.pexpire) end
end
for _, dkey in ipairs(sets) do
  redis.call('SET', dkey, seen[dkey], 'PX', dedup)
end
return out
