// pg-promise through the tunnel: it builds its own pg.Pool from `require('pg')`.
'use strict'
const { pgConfig, schemaName, searchPath, DDL, BIRTH_DATE, ADOPTED_AT, dateText, instantText, dbError, versionOf, main, TYPES_SQL, describeRow, survivesTermination } = require('./common.cjs')

main('pg-promise', async (step) => {
  const out = { version: versionOf('pg-promise') }
  const pgp = await step('load', () => require('pg-promise')({ capSQL: true }))
  if (!pgp) return out
  const schema = schemaName('pgp_clinic')
  const appSchema = schemaName('pgp_app')
  const admin = pgp(pgConfig('admin', { max: 1 }))
  await step('create schemas', async () => {
    await admin.none('CREATE SCHEMA $1:name', [schema])
    await admin.none('CREATE SCHEMA $1:name AUTHORIZATION iam_user', [appSchema])
  })
  await step('close admin', () => admin.$pool.end())

  const db = pgp(pgConfig('admin', { max: 4, options: searchPath(schema) }))
  await step('ddl', async () => {
    for (const ddl of DDL) await db.none(ddl)
  })
  const ids = await step('insert', async () => {
    const owner = await db.one('INSERT INTO owner (name, city, telephone) VALUES ($1, $2, $3) RETURNING id', ['John Doe', 'Anytown', '555-0100'])
    await db.none('INSERT INTO pet (name, birth_date, adopted_at, owner_id) VALUES ($1, $2, $3, $4)', ['Pet1', BIRTH_DATE, new Date(ADOPTED_AT), owner.id])
    await db.none('INSERT INTO pet (name, birth_date, owner_id) VALUES ($1, $2, $3)', ['Pet2', '2020-05-05', owner.id])
    const cs = new pgp.helpers.ColumnSet(['name'], { table: 'specialty' })
    const specs = await db.many(pgp.helpers.insert([{ name: 'Exotic' }, { name: 'Dogs' }], cs) + ' RETURNING id, name')
    const vet = await db.one('INSERT INTO vet (name) VALUES ($1) RETURNING id', ['Akua Mansa'])
    for (const s of specs) await db.none('INSERT INTO vet_specialty (vet_id, specialty_id) VALUES ($1, $2)', [vet.id, s.id])
    out.idIsUuid = /^[0-9a-f-]{36}$/.test(owner.id)
    return { owner: owner.id, vet: vet.id }
  })
  await step('join', async () => {
    const pets = await db.any('SELECT p.name, p.birth_date, p.adopted_at, o.name AS owner FROM pet p JOIN owner o ON o.id = p.owner_id ORDER BY p.name')
    out.join = pets.map((p) => `${p.owner}/${p.name}`)
    out.birthDate = dateText(pets[0].birth_date)
    out.adoptedAt = instantText(pets[0].adopted_at)
  })
  await step('many-to-many', async () => {
    const vs = await db.any('SELECT s.name FROM vet v JOIN vet_specialty vs ON vs.vet_id = v.id JOIN specialty s ON s.id = vs.specialty_id WHERE v.id = $1 ORDER BY s.name', [ids.vet])
    out.vetSpecialties = vs.map((r) => r.name)
  })
  await step('update', async () => {
    out.updated = (await db.result('UPDATE owner SET city = $1 WHERE id = $2', ['Othertown', ids.owner])).rowCount
    out.city = (await db.one('SELECT city FROM owner WHERE id = $1', [ids.owner])).city
  })
  await step('delete', async () => {
    out.deleted = (await db.result('DELETE FROM pet WHERE name = $1', ['Pet2'])).rowCount
  })
  await step('transactions', async () => {
    await db.tx(async (t) => {
      await t.none('INSERT INTO owner (name, city) VALUES ($1, $2)', ['Committed', 'A'])
    })
    const rolledBack = await db
      .tx(async (t) => {
        await t.none('INSERT INTO owner (name, city) VALUES ($1, $2)', ['RolledBack', 'B'])
        throw new Error('roll back')
      })
      .catch((e) => e.message === 'roll back')
    if (!rolledBack) throw new Error('the rolled-back transaction failed otherwise')
    out.afterTx = (await db.any('SELECT name FROM owner ORDER BY name')).map((r) => r.name)
  })
  await step('raw', async () => {
    out.raw = await db.one('SELECT 1 + $1::int AS n, $2::text AS s', [41, 'x'])
  })
  await step('types', async () => {
    out.types = describeRow(await db.one(TYPES_SQL))
  })
  await step('unique violation', async () => {
    try {
      await db.none('INSERT INTO owner (name, city, telephone) VALUES ($1, $2, $3)', ['Dup', 'C', '555-0100'])
      out.unique = 'no error'
    } catch (e) {
      out.unique = dbError(e)
    }
  })
  // pg-promise reads server_version from `client.connection`'s parameterStatus events, returns
  // one result per statement of a multi-statement text, and apps set parsers on pgp.pg.types.
  await step('server version', async () => {
    const c = await db.connect()
    try {
      out.serverVersion = c.client.serverVersion
    } finally {
      c.done()
    }
  })
  await step('multi', async () => {
    out.multi = (await db.multi('SELECT 1 AS a; SELECT $1::text AS b', ['two'])).map((rows) => rows[0])
  })
  await step('global type parser', async () => {
    pgp.pg.types.setTypeParser(pgp.pg.types.builtins.NUMERIC, parseFloat)
    out.numeric = (await db.one('SELECT 1.25::numeric AS x')).x
  })
  await step('concurrent', async () => {
    const pids = await Promise.all(Array.from({ length: 8 }, () => db.one('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)')))
    out.concurrent = { n: pids.length, pids: new Set(pids.map((r) => r.pid)).size }
  })
  await step('terminated connections', async () => {
    out.terminated = await survivesTermination((q) => db.any(q))
  })
  await step('close', () => db.$pool.end())

  const app = pgp(pgConfig('iam', { max: 2, options: searchPath(appSchema) }))
  await step('iam_user', async () => {
    await app.none('CREATE TABLE owner (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(30) NOT NULL)')
    await app.none('INSERT INTO owner (name) VALUES ($1)', ['Iam Owner'])
    out.iam = await app.one('SELECT current_user AS who, current_schema() AS schema, (SELECT count(*)::int FROM owner) AS owners')
  })
  await step('close iam_user', () => app.$pool.end())
  return out
})
