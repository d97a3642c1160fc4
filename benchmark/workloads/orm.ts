// Workloads 10 and 11: what ORMs send through `pg`, run against real pg and against this package
// loaded as `pg`, with the same config and the same calls.
//
// 10, Prisma-shaped: what `@prisma/adapter-pg` 7 does per query, `pool.query({ text, values,
//   rowMode: 'array', types: { getTypeParser } })` with a new `types` object each time, whose
//   parsers keep the server's text for the types Prisma reads itself (numeric, date, time,
//   timestamps, json, money, their arrays) and defer to `pg.types` for the rest.
// 11, Sequelize/TypeORM-shaped: `pool.query(text, values)`, object rows, default parsers.
//
// Each over (a) 1,000 rows × 10 columns of a table and (b) a point select by primary key.
import { createHash } from 'node:crypto';
import type { PgModule, PgPool, PgTypes, TextParser } from '../drivers/types.ts';
import { threadCpu, threadCpuSince } from '../lib/threads.ts';
import { check, measure, type Sample } from './index.ts';

export const ORM_TABLE = 'bench_orm_item';
export const ORM_TABLE_ROWS = 20_000;
export const ORM_PAGE = 1_000;
/** pg-pool's default size; the queries run one at a time, so one connection does the work. */
export const ORM_POOL_MAX = 10;

// uuid, text, int4, int8, numeric, bool, timestamptz, date, jsonb, float8.
const COLUMNS = ['id', 'name', 'rank', 'views', 'price', 'active', 'createdAt', 'day', 'meta', 'score'] as const;

/** Run once per run, by one worker, before any ORM workload. */
export const ORM_SETUP = [
  `drop table if exists ${ORM_TABLE}`,
  `create table ${ORM_TABLE} (
    "id" uuid primary key, "name" text not null, "rank" int4 not null unique, "views" int8 not null,
    "price" numeric(12, 2) not null, "active" bool not null, "createdAt" timestamptz not null, "day" date not null,
    "meta" jsonb not null, "score" float8 not null)`,
  `insert into ${ORM_TABLE}
   select md5(i::text)::uuid, 'item ' || i, i, i::int8 * 1000003, (i * 1.5)::numeric(12, 2), i % 3 = 0,
     timestamptz '2024-01-01 00:00:00+00' + i * interval '1 minute', date '2024-01-01' + i % 365,
     jsonb_build_object('n', i, 'tag', 't' || i % 10, 'flags', jsonb_build_array(i % 2 = 0, i % 5 = 0)), i * 0.25
   from generate_series(1, ${ORM_TABLE_ROWS}) as g(i)`,
  `analyze ${ORM_TABLE}`,
];

// The statements as each ORM writes them.
const prismaColumns = COLUMNS.map((c) => `"t0"."${c}"`).join(', ');
export const PRISMA_PAGE = `SELECT ${prismaColumns} FROM "public"."${ORM_TABLE}" AS "t0" WHERE "t0"."rank" > $1 ORDER BY "t0"."rank" ASC LIMIT $2 OFFSET $3`;
export const PRISMA_POINT = `SELECT ${prismaColumns} FROM "public"."${ORM_TABLE}" AS "t0" WHERE "t0"."id" = $1 LIMIT $2 OFFSET $3`;
const sequelizeColumns = COLUMNS.map((c) => `"${c}"`).join(', ');
export const SEQUELIZE_PAGE = `SELECT ${sequelizeColumns} FROM "${ORM_TABLE}" AS "Item" WHERE "Item"."rank" > $1 ORDER BY "Item"."rank" ASC LIMIT $2;`;
export const SEQUELIZE_POINT = `SELECT ${sequelizeColumns} FROM "${ORM_TABLE}" AS "Item" WHERE "Item"."id" = $1 LIMIT 1;`;

/** The primary key of the row with `rank` r, as the table was filled (`md5(r::text)::uuid`). */
export function idOf(rank: number): string {
  const h = createHash('md5').update(String(rank)).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

let ids: string[] | null = null;
// Made before timing starts, so no query's time includes hashing.
const idsByRank = (): string[] => (ids ??= Array.from({ length: ORM_TABLE_ROWS + 1 }, (_, r) => idOf(r)));

// Where page q starts, spread over the table.
const pageStart = (q: number): number => (q * 997) % (ORM_TABLE_ROWS - ORM_PAGE);
// The q-th point select's row.
const pointRank = (q: number): number => ((q * 7919) % ORM_TABLE_ROWS) + 1;

/**
 * Prisma's per-query `types`: its text parsers for the types it reads itself, `pg.types` for the
 * rest. Behaviour as @prisma/adapter-pg 7.10's conversion (this code is ours).
 */
export function prismaTypes(pgTypes: PgTypes): () => { getTypeParser(oid: number, format?: 'text' | 'binary'): TextParser } {
  const same: TextParser = (text) => text;
  const timestamp: TextParser = (text) => `${text.replace(' ', 'T')}+00:00`;
  const timestamptz: TextParser = (text) => text.replace(' ', 'T').replace(/[+-]\d{2}(:\d{2})?$/, '+00:00');
  const timetz: TextParser = (text) => text.replace(/[+-]\d{2}(:\d{2})?$/, '');
  const money: TextParser = (text) => text.slice(1);
  const arrayOf = (element: TextParser): TextParser => (text) => pgTypes.arrayParser.create(text, element).parse();
  const bytea = pgTypes.getTypeParser(17, 'text');
  const overrides: Record<number, TextParser> = {
    1700: same, 1231: arrayOf(same), // numeric
    1083: same, 1183: arrayOf(same), // time
    1266: timetz, // timetz
    1082: same, 1182: arrayOf(same), // date
    1114: timestamp, 1115: arrayOf(timestamp),
    1184: timestamptz, 1185: arrayOf(timestamptz),
    790: money, 791: arrayOf(money),
    114: same, 199: arrayOf(same), 3802: same, 3807: arrayOf(same), // json, jsonb
    17: bytea, 1001: pgTypes.getTypeParser(1001, 'text'),
    1561: arrayOf(same), 1563: arrayOf(same), 143: arrayOf(same), // bit[], varbit[], xml[]
  };
  // A new object per query, as the adapter makes one inside every call.
  return () => ({
    getTypeParser: (oid, format) => (format === 'text' && overrides[oid] ? overrides[oid]! : pgTypes.getTypeParser(oid, format)),
  });
}

export type OrmShape = 'prisma' | 'sequelize';
export type OrmQuery = 'page' | 'point';

/** One pool per worker, as an app holds one; its connections stay open across rounds. */
export interface OrmContext {
  pool: PgPool;
  pg: PgModule;
}

function checkPrismaRow(row: unknown, what: string): void {
  const r = row as unknown[];
  check(Array.isArray(r) && r.length === COLUMNS.length, `${what}: an array of ${COLUMNS.length}`);
  // int8 a string (pg's default), numeric/date/jsonb the server's text, timestamptz as Prisma rewrites it.
  check(typeof r[3] === 'string' && typeof r[4] === 'string' && typeof r[7] === 'string' && typeof r[8] === 'string', `${what}: text values`);
  check(typeof r[6] === 'string' && (r[6] as string).endsWith('+00:00') && (r[6] as string)[10] === 'T', `${what}: Prisma's timestamptz`);
  check(typeof r[2] === 'number' && typeof r[5] === 'boolean' && typeof r[9] === 'number', `${what}: numbers and bools`);
}

function checkObjectRow(row: unknown, what: string): void {
  const r = row as Record<string, unknown>;
  check(typeof r.views === 'string' && typeof r.price === 'string', `${what}: int8 and numeric as strings`);
  check(r.createdAt instanceof Date && r.day instanceof Date, `${what}: Dates`);
  check(typeof r.meta === 'object' && r.meta !== null && typeof (r.meta as { n?: unknown }).n === 'number', `${what}: parsed jsonb`);
  check(typeof r.rank === 'number' && typeof r.active === 'boolean' && typeof r.score === 'number', `${what}: numbers and bools`);
}

/** `queries` queries of the given shape and kind, in turn; every result is checked. */
export function ormQueries(ctx: OrmContext, shape: OrmShape, kind: OrmQuery, queries: number, from = 0): Promise<Sample> {
  const { pool } = ctx;
  const newTypes = prismaTypes(ctx.pg.types);
  const id = idsByRank();
  const threads0 = threadCpu();
  const sample = measure(async () => {
    for (let q = from; q < from + queries; q++) {
      if (shape === 'prisma') {
        const values = kind === 'page' ? [pageStart(q), ORM_PAGE, 0] : [id[pointRank(q)], 1, 0];
        const r = await pool.query({ text: kind === 'page' ? PRISMA_PAGE : PRISMA_POINT, values, rowMode: 'array', types: newTypes() });
        const rank = kind === 'page' ? pageStart(q) + 1 : pointRank(q);
        check(r.rows.length === (kind === 'page' ? ORM_PAGE : 1) && (r.rows[0] as unknown[])[2] === rank, `${shape} ${kind} rows`);
        if (q === from) checkPrismaRow(r.rows[0], `${shape} ${kind}`);
      } else {
        const r = kind === 'page'
          ? await pool.query(SEQUELIZE_PAGE, [pageStart(q), ORM_PAGE])
          : await pool.query(SEQUELIZE_POINT, [id[pointRank(q)]]);
        const rank = kind === 'page' ? pageStart(q) + 1 : pointRank(q);
        check(r.rows.length === (kind === 'page' ? ORM_PAGE : 1) && (r.rows[0] as { rank: number }).rank === rank, `${shape} ${kind} rows`);
        if (q === from) checkObjectRow(r.rows[0], `${shape} ${kind}`);
      }
    }
  }, kind === 'page');
  return sample.then((s) => ({ ...s, threads: threadCpuSince(threads0) }));
}
