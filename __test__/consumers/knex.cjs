// Knex 3 through the tunnel: `client: 'pg'` (its own `require('pg')`), and a client class whose
// _driver() returns this package, as an app would write to inject it.
'use strict'
const { driver, pgConfig, schemaName, searchPath, DDL, BIRTH_DATE, ADOPTED_AT, dateText, instantText, dbError, versionOf, main, TYPES_SQL, describeRow, survivesTermination } = require('./common.cjs')
const knexLib = require('knex')
const PgClient = require('knex/lib/dialects/postgres')

class DsqlClient extends PgClient {
  _driver() {
    return driver()
  }
}

main('knex', async (step) => {
  const out = { version: versionOf('knex') }
  const schema = schemaName('knex_clinic')
  const appSchema = schemaName('knex_app')
  const admin = knexLib({ client: DsqlClient, connection: pgConfig('admin'), pool: { min: 0, max: 1 } })
  await step('create schemas', async () => {
    await admin.raw('CREATE SCHEMA ??', [schema])
    await admin.raw('CREATE SCHEMA ?? AUTHORIZATION iam_user', [appSchema])
  })
  await step('close admin', () => admin.destroy())

  const db = knexLib({ client: 'pg', connection: pgConfig('admin', { options: searchPath(schema) }), pool: { min: 0, max: 4 } })
  await step('ddl', async () => {
    for (const ddl of DDL) await db.raw(ddl)
  })
  const ids = await step('insert', async () => {
    const [owner] = await db('owner').insert({ name: 'John Doe', city: 'Anytown', telephone: '555-0100' }).returning('id')
    await db('pet').insert([
      { name: 'Pet1', birth_date: BIRTH_DATE, adopted_at: new Date(ADOPTED_AT), owner_id: owner.id },
      { name: 'Pet2', birth_date: '2020-05-05', owner_id: owner.id },
    ])
    const specs = await db('specialty').insert([{ name: 'Exotic' }, { name: 'Dogs' }]).returning(['id', 'name'])
    const [vet] = await db('vet').insert({ name: 'Akua Mansa' }).returning('id')
    await db('vet_specialty').insert(specs.map((s) => ({ vet_id: vet.id, specialty_id: s.id })))
    out.idIsUuid = /^[0-9a-f-]{36}$/.test(owner.id)
    return { owner: owner.id, vet: vet.id }
  })
  await step('join', async () => {
    const pets = await db('pet as p').join('owner as o', 'o.id', 'p.owner_id').select('p.name', 'p.birth_date', 'p.adopted_at', 'o.name as owner').orderBy('p.name')
    out.join = pets.map((p) => `${p.owner}/${p.name}`)
    out.birthDate = dateText(pets[0].birth_date)
    out.adoptedAt = instantText(pets[0].adopted_at)
  })
  await step('many-to-many', async () => {
    out.vetSpecialties = await db('vet as v')
      .join('vet_specialty as vs', 'vs.vet_id', 'v.id')
      .join('specialty as s', 's.id', 'vs.specialty_id')
      .where('v.id', ids.vet)
      .orderBy('s.name')
      .pluck('s.name')
  })
  await step('update', async () => {
    out.updated = await db('owner').where({ id: ids.owner }).update({ city: 'Othertown' })
    out.city = (await db('owner').where({ id: ids.owner }).first('city')).city
  })
  await step('delete', async () => {
    out.deleted = await db('pet').where({ name: 'Pet2' }).del()
  })
  await step('transactions', async () => {
    await db.transaction(async (trx) => {
      await trx('owner').insert({ name: 'Committed', city: 'A' })
    })
    const rolledBack = await db
      .transaction(async (trx) => {
        await trx('owner').insert({ name: 'RolledBack', city: 'B' })
        throw new Error('roll back')
      })
      .catch((e) => e.message === 'roll back')
    if (!rolledBack) throw new Error('the rolled-back transaction failed otherwise')
    out.afterTx = await db('owner').orderBy('name').pluck('name')
  })
  await step('raw', async () => {
    out.raw = (await db.raw('SELECT 1 + ?::int AS n, ?::text AS s', [41, 'x'])).rows[0]
  })
  await step('types', async () => {
    out.types = describeRow((await db.raw(TYPES_SQL)).rows[0])
  })
  await step('unique violation', async () => {
    try {
      await db('owner').insert({ name: 'Dup', city: 'C', telephone: '555-0100' })
      out.unique = 'no error'
    } catch (e) {
      out.unique = dbError(e)
    }
  })
  await step('concurrent', async () => {
    const pids = await Promise.all(Array.from({ length: 8 }, () => db.raw('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)')))
    out.concurrent = { n: pids.length, pids: new Set(pids.map((r) => r.rows[0].pid)).size }
  })
  await step('terminated connections', async () => {
    out.terminated = await survivesTermination(async (q) => (await db.raw(q)).rows)
  })
  // .timeout(ms, { cancel: true }) cancels with pg_cancel_backend(connection.processID) on a second
  // connection. Whether the statement is gone is asked at once on a connection of its own.
  await step('cancel', async () => {
    const started = Date.now()
    try {
      await db.raw('SELECT pg_sleep(5)').timeout(300, { cancel: true })
      out.cancel = 'not cancelled'
    } catch (e) {
      out.cancel = { error: e.name, ms: Date.now() - started }
    }
    const watcher = knexLib({ client: DsqlClient, connection: pgConfig('admin'), pool: { min: 0, max: 1 } })
    try {
      const sql = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(5)' AND state = 'active'"
      out.sleepingAfterCancel = (await watcher.raw(sql)).rows[0].n
      out.checkedAfterMs = Date.now() - started
    } finally {
      await watcher.destroy()
    }
  })
  // .stream() goes through pg-query-stream (pg-cursor), a Submittable driven by the client.
  await step('stream', async () => {
    const streamed = []
    await new Promise((resolve, reject) => {
      const s = db.raw('SELECT g AS n FROM generate_series(1, 5) g').stream()
      s.on('data', (r) => streamed.push(r.n))
      s.on('error', reject)
      s.on('end', resolve)
    })
    out.streamed = streamed
  })
  await step('close', () => db.destroy())

  const app = knexLib({ client: DsqlClient, connection: pgConfig('iam', { options: searchPath(appSchema) }), pool: { min: 0, max: 2 } })
  await step('iam_user', async () => {
    await app.schema.createTable('owner', (t) => {
      t.uuid('id').primary().defaultTo(app.raw('gen_random_uuid()'))
      t.string('name', 30).notNullable()
    })
    await app('owner').insert({ name: 'Iam Owner' })
    out.iam = (await app.raw('SELECT current_user AS who, current_schema() AS schema, (SELECT count(*)::int FROM owner) AS owners')).rows[0]
  })
  await step('close iam_user', () => app.destroy())
  return out
})
