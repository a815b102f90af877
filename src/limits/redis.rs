//! The GCRA of [`super::gcra`] as Redis scripts, so that every instance
//! sharing a Redis sees the same limits. Each script runs atomically on the
//! server and reads the server's clock (`TIME`), so instances whose clocks
//! differ still agree. Times are whole microseconds, kept exact by writing
//! them with `%.0f` (Lua numbers are doubles, exact to 2^53).

use std::sync::LazyLock;

use super::gcra::{Check, Over};
use crate::redis::SharedRedis;

/// KEYS: the limits; ARGV: tolerance and cost for each, in order.
/// Returns `{1}` when admitted (and charged), `{0, wait_us, index}` (index
/// from 1) when not.
static ADMIT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local worst, at = 0, 0
local tats = {}
for i, key in ipairs(KEYS) do
  local tol = tonumber(ARGV[2 * i - 1])
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  tats[i] = tat
  local over = tat - now - tol
  if over > worst then worst = over; at = i end
end
if at > 0 then return {0, worst, at} end
for i, key in ipairs(KEYS) do
  local cost = tonumber(ARGV[2 * i])
  if cost > 0 then
    local tat = tats[i] + cost
    redis.call('SET', key, string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000) + 1000))
  end
end
return {1}
",
    )
});

/// KEYS: limits; ARGV: the cost to add to each. Returns 1.
static CHARGE: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0') or 0
  if tat < now then tat = now end
  tat = tat + tonumber(ARGV[i])
  redis.call('SET', key, string.format('%.0f', tat), 'PX', string.format('%.0f', math.ceil((tat - now) / 1000) + 1000))
end
return 1
",
    )
});

/// Runs the admission in Redis. `None` when Redis is not answering (the
/// caller then uses its local table).
pub async fn admit(redis: &SharedRedis, checks: &[Check]) -> Option<Result<(), Over>> {
    let keys: Vec<String> = checks.iter().map(|c| redis.key(&c.key)).collect();
    let args: Vec<u64> = checks.iter().flat_map(|c| [c.tolerance, c.cost]).collect();
    let answer: Vec<i64> = redis
        .call("rate limit", |mut conn| async move {
            let mut inv = ADMIT.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            for a in &args {
                inv.arg(*a);
            }
            inv.invoke_async(&mut conn).await
        })
        .await?;
    match answer.as_slice() {
        [1, ..] => Some(Ok(())),
        [0, wait, at, ..] => Some(Err(Over {
            index: usize::try_from(*at - 1).unwrap_or(0),
            wait_us: u64::try_from(*wait).unwrap_or(0),
        })),
        _ => None,
    }
}

/// Adds `cost` to each key in Redis; `false` when Redis is not answering.
pub async fn charge(redis: &SharedRedis, charges: &[(String, u64)]) -> bool {
    let keys: Vec<String> = charges.iter().map(|(k, _)| redis.key(k)).collect();
    let args: Vec<u64> = charges.iter().map(|(_, c)| *c).collect();
    redis
        .call("rate limit charge", |mut conn| async move {
            let mut inv = CHARGE.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            for a in &args {
                inv.arg(*a);
            }
            inv.invoke_async::<i64>(&mut conn).await
        })
        .await
        .is_some()
}
