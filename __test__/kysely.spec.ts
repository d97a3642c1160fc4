// Query builders through the tunnel. Kysely's PostgresDialect takes our Pool as it is (it calls
// pool.connect(), client.query(sql, params), client.release(destroy?), pool.end()). Drizzle's
// node-postgres driver imports `pg` itself, so it is served through drizzle-orm/pg-proxy with a
// three-line callback instead, and its transactions through pool.transaction (OCC retry included).
import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import { Kysely, PostgresDialect, sql, type Generated, type InferResult } from 'kysely'
import { DatabaseError, isOccError, Pool, type ClientConfig, type QueryOptions, type QueryResult } from '../index.js'
import { through, useStack, type Stack } from './helpers.ts'

const stack = useStack({ tokenAuth: true })
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Pool options through the tunnel, tokens minted from the stack's AWS identity. */
function poolOptions(s: Stack, extra: ClientConfig & Record<string, unknown> = {}): ClientConfig & Record<string, unknown> {
  const o: ClientConfig & Record<string, unknown> = { ...through(s), credentials: { ...s.aws }, ...extra }
  delete o.password
  return o
}

interface Database {
  pets: {
    id: number
    name: string
    species: string
    created_at: Generated<Date>
  }
  counters: {
    id: number
    n: number
  }
}

describe('Kysely (PostgresDialect with the Pool as it is)', () => {
  let pool: Pool
  let db: Kysely<Database>

  before(async () => {
    pool = new Pool(poolOptions(stack(), { max: 4 }))
    db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
    await db.schema
      .createTable('pets')
      .addColumn('id', 'integer', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('species', 'text', (c) => c.notNull())
      .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
      .execute()
    await db.schema.createTable('counters').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('n', 'integer', (c) => c.notNull()).execute()
  })

  after(async () => {
    await db?.destroy()
  })

  test('insert (returning), select, update, delete', async () => {
    const inserted = await db
      .insertInto('pets')
      .values([
        { id: 1, name: 'Tom', species: 'cat' },
        { id: 2, name: 'Rex', species: 'dog' },
        { id: 3, name: 'Kitty', species: 'cat' },
      ])
      .returning(['id', 'created_at'])
      .execute()
    assert.deepEqual(inserted.map((r) => r.id), [1, 2, 3])
    assert.ok(inserted[0].created_at instanceof Date)

    const cats = await db.selectFrom('pets').select(['id', 'name']).where('species', '=', 'cat').orderBy('id').execute()
    assert.deepEqual(cats, [{ id: 1, name: 'Tom' }, { id: 3, name: 'Kitty' }])

    const one = await db.selectFrom('pets').selectAll().where('id', '=', 2).executeTakeFirstOrThrow()
    assert.equal(one.name, 'Rex')

    const updated = await db.updateTable('pets').set({ name: 'Tommy' }).where('id', '=', 1).executeTakeFirst()
    assert.equal(updated.numUpdatedRows, 1n)
    const deleted = await db.deleteFrom('pets').where('species', '=', 'dog').executeTakeFirst()
    assert.equal(deleted.numDeletedRows, 1n)

    const { count } = await db.selectFrom('pets').select((eb) => eb.fn.countAll<string>().as('count')).executeTakeFirstOrThrow()
    assert.equal(count, '2') // int8 arrives as a string, as with pg

    const raw = await sql<{ n: number; names: string[] }>`select ${41}::int + 1 as n, ${['a', 'b']}::text[] as names`.execute(db)
    assert.deepEqual(raw.rows, [{ n: 42, names: ['a', 'b'] }])
  })

  test('transactions commit, and roll back when the callback throws', async () => {
    await db.transaction().execute(async (trx) => {
      await trx.insertInto('pets').values({ id: 10, name: 'Nemo', species: 'fish' }).execute()
      await trx.insertInto('pets').values({ id: 11, name: 'Dory', species: 'fish' }).execute()
    })
    await assert.rejects(
      db.transaction().execute(async (trx) => {
        await trx.insertInto('pets').values({ id: 12, name: 'Bruce', species: 'fish' }).execute()
        throw new Error('changed my mind')
      }),
      /changed my mind/,
    )
    const fish = await db.selectFrom('pets').select('name').where('species', '=', 'fish').orderBy('id').execute()
    assert.deepEqual(fish.map((r) => r.name), ['Nemo', 'Dory'])

    // DSQL's only isolation level, spelled out, and an explicit connection.
    const n = await db
      .transaction()
      .setIsolationLevel('repeatable read')
      .execute(async (trx) => (await trx.selectFrom('pets').select('id').execute()).length)
    assert.equal(n, 4)
    assert.equal(await db.connection().execute(async (conn) => (await conn.selectFrom('pets').selectAll().execute()).length), 4)
  })

  test('server errors keep their SQLSTATE and fields through Kysely', async () => {
    const err = await db
      .insertInto('pets')
      .values({ id: 10, name: 'again', species: 'fish' })
      .execute()
      .then(
        () => assert.fail('expected a unique violation'),
        (e: unknown) => e,
      )
    assert.ok(err instanceof DatabaseError)
    assert.equal(err.code, '23505')
    assert.equal(err.constraint, 'pets_pkey')
    // The failed statement did not spoil the pool: the next query runs.
    assert.equal((await db.selectFrom('pets').select('id').where('id', '=', 10).execute()).length, 1)
  })

  test('streaming: compile() the Kysely query and iterate pool.stream()', async () => {
    const query = db.selectFrom('pets').select(['id', 'name']).where('species', '=', 'fish').orderBy('id')
    const { sql: text, parameters } = query.compile()
    const names: string[] = []
    for await (const row of pool.stream<InferResult<typeof query>[number]>(text, parameters, { batchSize: 1 })) names.push(row.name)
    assert.deepEqual(names, ['Nemo', 'Dory'])
  })

  test('OCC conflicts: retrying the whole Kysely transaction makes every one commit', async () => {
    await db.insertInto('counters').values({ id: 1, n: 0 }).execute()
    let retries = 0
    const increment = async () => {
      for (let attempt = 1; ; attempt++) {
        try {
          return await db
            .transaction()
            .setIsolationLevel('repeatable read')
            .execute(async (trx) => {
              const { n } = await trx.selectFrom('counters').select('n').where('id', '=', 1).executeTakeFirstOrThrow()
              await sleep(10) // overlap the transactions
              await trx.updateTable('counters').set({ n: n + 1 }).where('id', '=', 1).execute()
            })
        } catch (err) {
          if (!isOccError(err) || attempt > 20) throw err
          retries++
          await sleep(Math.random() * 10 * attempt)
        }
      }
    }
    await Promise.all(Array.from({ length: 6 }, increment))
    assert.ok(retries > 0, 'conflicts happened')
    assert.deepEqual(await db.selectFrom('counters').select('n').where('id', '=', 1).execute(), [{ n: 6 }])
  })

  test('destroy() ends the pool', async () => {
    const local = new Pool(poolOptions(stack(), { max: 1 }))
    const kdb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: local }) })
    assert.equal((await kdb.selectFrom('pets').select('id').limit(1).execute()).length, 1)
    await kdb.destroy()
    await assert.rejects(local.query('select 1'), { code: 'POOL_ENDED' })
  })
})

/** Anything that runs a query: a Pool, a checked-out PoolClient, a transaction's Client. */
interface Queryable {
  query(text: string, values?: unknown[], options?: QueryOptions): Promise<QueryResult>
}

/** drizzle-orm/pg-proxy's callback: rows as arrays for 'all', as objects for 'execute'. */
type RemoteCallback = (sql: string, params: unknown[], method: 'all' | 'execute') => Promise<{ rows: unknown[] }>

/** A Drizzle pg-proxy callback that runs its queries on `target`. */
function drizzleRunner(target: Queryable): RemoteCallback {
  return async (text, params, method) => {
    const r = await target.query(text, params, method === 'all' ? { rowMode: 'array' } : {})
    return { rows: r.rows }
  }
}

// Drizzle's declaration files compile only with skipLibCheck (they import optional peers such as
// `gel`), and this project type-checks every declaration file it reaches: Drizzle is loaded here
// through computed specifiers, untyped. In an application (skipLibCheck) it is fully typed.
const load = (specifier: string): Promise<any> => import(specifier)

describe('Drizzle (pg-proxy callback on the Pool)', () => {
  let drizzle: (callback: RemoteCallback) => any
  let eq: (column: unknown, value: unknown) => unknown
  let books: any
  let pool: Pool

  before(async () => {
    const [proxy, core, ops] = await Promise.all([load('drizzle-orm/pg-proxy'), load('drizzle-orm/pg-core'), load('drizzle-orm')])
    drizzle = proxy.drizzle
    eq = ops.eq
    books = core.pgTable('books', {
      id: core.integer('id').primaryKey(),
      title: core.text('title').notNull(),
      stock: core.integer('stock').notNull(),
      addedAt: core.timestamp('added_at', { withTimezone: true }).notNull().defaultNow(),
    })
    pool = new Pool(poolOptions(stack(), { max: 4 }))
    await pool.query('create table books (id integer primary key, title text not null, stock integer not null, added_at timestamptz not null default now())')
  })

  after(async () => {
    await pool?.end()
  })

  test('insert (returning), select, update, delete', async () => {
    const db = drizzle(drizzleRunner(pool))
    const added: { id: number; addedAt: Date }[] = await db
      .insert(books)
      .values([
        { id: 1, title: 'Dune', stock: 3 },
        { id: 2, title: 'Emma', stock: 1 },
      ])
      .returning({ id: books.id, addedAt: books.addedAt })
    assert.deepEqual(added.map((b) => b.id), [1, 2])
    assert.ok(added[0].addedAt instanceof Date)

    const rows: { title: string; stock: number; addedAt: Date }[] = await db.select().from(books).where(eq(books.title, 'Dune'))
    assert.equal(rows.length, 1)
    assert.equal(rows[0].stock, 3)
    assert.ok(rows[0].addedAt instanceof Date)

    await db.update(books).set({ stock: 2 }).where(eq(books.id, 1))
    await db.delete(books).where(eq(books.id, 2))
    assert.deepEqual(await db.select({ id: books.id, stock: books.stock }).from(books), [{ id: 1, stock: 2 }])
  })

  test('transactions: pool.transaction with a Drizzle instance bound to its client (OCC retry included)', async () => {
    await pool.transaction(async (tx) => {
      const txdb = drizzle(drizzleRunner(tx))
      await txdb.insert(books).values({ id: 3, title: 'Ulysses', stock: 5 })
      await txdb.update(books).set({ stock: 4 }).where(eq(books.id, 3))
    })
    await assert.rejects(
      pool.transaction(async (tx) => {
        await drizzle(drizzleRunner(tx)).insert(books).values({ id: 4, title: 'Rolled back', stock: 1 })
        throw new Error('abort')
      }),
      /abort/,
    )
    const db = drizzle(drizzleRunner(pool))
    assert.deepEqual(await db.select({ id: books.id, stock: books.stock }).from(books).where(eq(books.id, 3)), [{ id: 3, stock: 4 }])
    assert.equal((await db.select().from(books).where(eq(books.id, 4))).length, 0)
    // Drizzle's own db.transaction() is not available on pg-proxy: it says so.
    await assert.rejects(db.transaction(async () => {}), /not supported/)
  })

  // drizzle-orm/node-postgres imports `pg` when it loads (for pg's type parsers and an instanceof
  // check), though it never uses it to talk to the server: with `pg` installed (a dev dependency
  // here, as in any app using that driver), the Pool serves it.
  test('drizzle-orm/node-postgres serves the Pool (with `pg` installed for its imports)', async () => {
    const { drizzle: nodePg } = await load('drizzle-orm/node-postgres')
    const db = nodePg({ client: pool })
    await db.insert(books).values({ id: 20, title: 'Middlemarch', stock: 2 })
    const rows: { title: string; addedAt: Date }[] = await db.select().from(books).where(eq(books.id, 20))
    assert.equal(rows[0].title, 'Middlemarch')
    assert.ok(rows[0].addedAt instanceof Date)
    // Its transactions check a connection out (pool.connect / release) and roll back on a throw.
    const stock = await db.transaction(async (tx: any) => {
      await tx.update(books).set({ stock: 1 }).where(eq(books.id, 20))
      return (await tx.select({ stock: books.stock }).from(books).where(eq(books.id, 20)))[0].stock
    })
    assert.equal(stock, 1)
    await assert.rejects(
      db.transaction(async (tx: any) => {
        await tx.delete(books).where(eq(books.id, 20))
        throw new Error('keep it')
      }),
      /keep it/,
    )
    assert.equal((await db.select().from(books).where(eq(books.id, 20))).length, 1)
  })
})
