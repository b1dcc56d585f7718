# -*- test-case-name: tests.test_e2e_cluster -*-
"""
The cluster's keys in Redis, and the scripts that change them: see
L{logio.cluster.relay}.  A script runs whole, with nothing else between its
commands, so numbering an entry and appending it are one step.
"""

IDENT = "logio:id"
SEQ = "logio:seq"
STREAM = "logio:records"

# Make the cluster's id unless there is one, and make the numbering go on
# after what this node has numbered: the id, and the last number given.
JOIN = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if last < tonumber(ARGV[2]) then
    last = tonumber(ARGV[2])
    redis.call('SET', KEYS[2], last)
end
return {redis.call('GET', KEYS[1]), last}
"""

# Number an entry and append it, if the cluster is still the one the node
# joined: the first number.
APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return redis.error_reply('LOGIO-EPOCH the cluster id changed')
end
local count = tonumber(ARGV[2])
local last = redis.call('INCRBY', KEYS[2], count)
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], (last - count + 1) .. '-0',
    's', last - count + 1, 'n', count, 'o', ARGV[4], 'b', ARGV[5], 'd', ARGV[6])
return last - count + 1
"""

# Append a note (no records, no number of its own), after the last entry.
NOTE = """
local last = redis.call('GET', KEYS[1]) or '0'
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], last .. '-*',
    'o', ARGV[2], 'g', ARGV[3])
"""
