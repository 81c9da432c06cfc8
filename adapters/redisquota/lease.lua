-- A mixer's lease work for one counter, atomic in Redis: units of its
-- leases given back, and the deduplication records of the allocations it
-- answered from them. A record whose key is there already was answered
-- before (by this mixer or another): that answer charged nothing, so its
-- units go back too. The clock is the mixer's.
--
-- KEYS[1..n]  one hash per window, as allocate.lua's
-- KEYS[n+1..] the deduplication keys of the records
-- ARGV        n, dedup TTL (ms), now (µs),
--             then per window: bucket (µs), slots,
--             then the number of refunds and per refund: lease start (µs),
--             units,
--             then the records, in runs from one lease each: lease start
--             (µs), records in the run, then per record its units and the
--             answer as allocate.lua records it (its key is the next of
--             KEYS)
--
-- Units charged at t go back to the slot of t in each window where that
-- slot still counts (a slot past its window frees itself). Returns
-- {units given back, records that were repeats}.
local nw = tonumber(ARGV[1])
local dedup = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local w = {}
for i = 1, nw do
  local a = 4 + (i - 1) * 2
  w[i] = {bucket = tonumber(ARGV[a]), n = tonumber(ARGV[a + 1])}
end
local a = 4 + nw * 2
local back = {} -- lease start -> units
local nr = tonumber(ARGV[a])
a = a + 1
for _ = 1, nr do
  back[ARGV[a]] = (back[ARGV[a]] or 0) + tonumber(ARGV[a + 1])
  a = a + 2
end

local repeats = 0
if #KEYS > nw then
  local keys = {}
  for k = nw + 1, #KEYS do keys[#keys + 1] = KEYS[k] end
  local v = redis.call('MGET', unpack(keys))
  local written = {}
  local k = 0
  while a <= #ARGV do
    local at, n = ARGV[a], tonumber(ARGV[a + 1])
    a = a + 2
    for _ = 1, n do
      k = k + 1
      if v[k] or written[keys[k]] then
        repeats = repeats + 1
        back[at] = (back[at] or 0) + tonumber(ARGV[a])
      else
        redis.call('SET', keys[k], ARGV[a + 1], 'PX', dedup)
        written[keys[k]] = true
      end
      a = a + 2
    end
  end
end

local returned = 0
for at, units in pairs(back) do
  local t = tonumber(at)
  for i = 1, nw do
    local s = math.floor(t / w[i].bucket)
    if math.floor(now / w[i].bucket) - s <= w[i].n then
      local f = string.format('%d', s)
      local c = tonumber(redis.call('HGET', KEYS[i], f))
      if c then
        local left = c - math.min(c, units)
        if left > 0 then
          redis.call('HSET', KEYS[i], f, string.format('%d', left))
        else
          redis.call('HDEL', KEYS[i], f)
        end
      end
    end
  end
  returned = returned + units
end
return {returned, repeats}
