// The statements every driver runs, identical text for all.

/** Workloads 2, 5, 6, 8 (soak), 9: one parameter, one row. */
export const TINY = 'select $1::int as n';

/** Workload 3: `$1` rows × int4, text, float8, bool, timestamptz. */
export const WIDE_5 = `select i as id, 'name ' || i as name, i * 0.5::float8 as score, i % 2 = 0 as flag,
  timestamptz '2024-01-01 00:00:00+00' + i * interval '1 second' as at
from generate_series(1, $1::int) as g(i)`;

/** Workload 4: 1,000 rows × 10 mixed columns, starting at `$1`. */
export const MIXED_10 = `select i as id, i::int8 * 1000003 as big, 'item ' || i as name, i * 0.25::float8 as score,
  i % 3 = 0 as flag, timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute' as at,
  (i * 1.5)::numeric(12, 2) as amount, date '2024-01-01' + i % 365 as day, md5(i::text)::uuid as uid,
  (i % 100)::int2 as small
from generate_series($1::int, $1::int + 999) as g(i)`;

export const MIXED_10_ROWS = 1000;
