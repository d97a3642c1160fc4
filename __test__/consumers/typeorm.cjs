// TypeORM 0.3 through the tunnel, with this package injected as `driver`.
'use strict'
require('reflect-metadata')
const { driver, pgConfig, schemaName, searchPath, DDL, BIRTH_DATE, ADOPTED_AT, dateText, instantText, dbError, versionOf, main, TYPES_SQL, describeRow, survivesTermination } = require('./common.cjs')
const { DataSource, EntitySchema } = require('typeorm')

const uuidKey = { id: { type: 'uuid', primary: true, generated: 'uuid' } }
const Owner = new EntitySchema({
  name: 'Owner',
  tableName: 'owner',
  columns: { ...uuidKey, name: { type: 'varchar', length: 30 }, city: { type: 'varchar', length: 80 }, telephone: { type: 'varchar', length: 20, nullable: true } },
  relations: { pets: { type: 'one-to-many', target: 'Pet', inverseSide: 'owner' } },
})
const Pet = new EntitySchema({
  name: 'Pet',
  tableName: 'pet',
  columns: { ...uuidKey, name: { type: 'varchar', length: 30 }, birth_date: { type: 'date' }, adopted_at: { type: 'timestamptz', nullable: true } },
  relations: { owner: { type: 'many-to-one', target: 'Owner', joinColumn: { name: 'owner_id' }, createForeignKeyConstraints: false } },
})
const Specialty = new EntitySchema({ name: 'Specialty', tableName: 'specialty', columns: { ...uuidKey, name: { type: 'varchar', length: 80 } } })
const Vet = new EntitySchema({
  name: 'Vet',
  tableName: 'vet',
  columns: { ...uuidKey, name: { type: 'varchar', length: 30 } },
  relations: {
    specialties: {
      type: 'many-to-many',
      target: 'Specialty',
      joinTable: { name: 'vet_specialty', joinColumn: { name: 'vet_id' }, inverseJoinColumn: { name: 'specialty_id' } },
      createForeignKeyConstraints: false,
    },
  },
})

/** TypeORM's option names for the same pg settings; anything else goes to the Pool as `extra`. */
function dataSource(role, extra = {}, entities = [Owner, Pet, Specialty, Vet]) {
  const { host, port, user, password, database, ssl, ...rest } = pgConfig(role)
  return new DataSource({
    type: 'postgres',
    driver: driver(),
    host,
    port,
    username: user,
    ...(password ? { password } : {}),
    database,
    ssl,
    extra: { max: 4, ...rest, ...extra },
    entities,
    // Sets pg.defaults.parseInt8 (TypeORM checks for an own setter first).
    parseInt8: true,
    synchronize: false,
    installExtensions: false,
    logging: false,
  })
}

main('typeorm', async (step) => {
  const out = { version: versionOf('typeorm') }
  const schema = schemaName('typeorm_clinic')
  const appSchema = schemaName('typeorm_app')
  const admin = await step('connect admin', () => dataSource('admin', {}, []).initialize())
  await step('create schemas', async () => {
    await admin.query(`CREATE SCHEMA ${schema}`)
    await admin.query(`CREATE SCHEMA ${appSchema} AUTHORIZATION iam_user`)
  })
  await step('close admin', () => admin.destroy())

  const ds = await step('connect', () => dataSource('admin', { options: searchPath(schema) }).initialize())
  await step('ddl', async () => {
    for (const ddl of DDL) await ds.query(ddl)
  })
  const owners = ds?.getRepository('Owner')
  const petsRepo = ds?.getRepository('Pet')
  const ids = await step('insert', async () => {
    const owner = await owners.save({ name: 'John Doe', city: 'Anytown', telephone: '555-0100' })
    await petsRepo.save([
      { name: 'Pet1', birth_date: BIRTH_DATE, adopted_at: new Date(ADOPTED_AT), owner },
      { name: 'Pet2', birth_date: '2020-05-05', owner },
    ])
    const specs = await ds.getRepository('Specialty').save([{ name: 'Exotic' }, { name: 'Dogs' }])
    const vet = await ds.getRepository('Vet').save({ name: 'Akua Mansa' })
    // vet_specialty rows carry their own uuid key, which a many-to-many join table does not
    // fill in: written with SQL, read through the relation.
    for (const s of specs) await ds.query('INSERT INTO vet_specialty (vet_id, specialty_id) VALUES ($1, $2)', [vet.id, s.id])
    out.idIsUuid = /^[0-9a-f-]{36}$/.test(owner.id)
    return { owner: owner.id, vet: vet.id }
  })
  await step('join', async () => {
    const pets = await petsRepo.find({ relations: { owner: true }, order: { name: 'ASC' } })
    out.join = pets.map((p) => `${p.owner.name}/${p.name}`)
    out.birthDate = dateText(pets[0].birth_date)
    out.adoptedAt = instantText(pets[0].adopted_at)
  })
  await step('many-to-many', async () => {
    const v = await ds.getRepository('Vet').findOne({ where: { id: ids.vet }, relations: { specialties: true } })
    out.vetSpecialties = v.specialties.map((s) => s.name).sort()
  })
  await step('update', async () => {
    out.updated = (await owners.update({ id: ids.owner }, { city: 'Othertown' })).affected
    out.city = (await owners.findOneBy({ id: ids.owner })).city
  })
  await step('delete', async () => {
    out.deleted = (await petsRepo.delete({ name: 'Pet2' })).affected
  })
  await step('transactions', async () => {
    await ds.transaction(async (m) => {
      await m.getRepository('Owner').save({ name: 'Committed', city: 'A' })
    })
    const rolledBack = await ds
      .transaction(async (m) => {
        await m.getRepository('Owner').save({ name: 'RolledBack', city: 'B' })
        throw new Error('roll back')
      })
      .catch((e) => e.message === 'roll back')
    if (!rolledBack) throw new Error('the rolled-back transaction failed otherwise')
    out.afterTx = (await owners.find({ order: { name: 'ASC' } })).map((o) => o.name)
  })
  await step('raw', async () => {
    out.raw = (await ds.query('SELECT 1 + $1::int AS n, $2::text AS s', [41, 'x']))[0]
  })
  await step('types', async () => {
    out.types = describeRow((await ds.query(TYPES_SQL))[0])
  })
  await step('unique violation', async () => {
    try {
      await owners.insert({ name: 'Dup', city: 'C', telephone: '555-0100' })
      out.unique = 'no error'
    } catch (e) {
      out.unique = { ...dbError(e), typeormError: e.name }
    }
  })
  await step('parseInt8', async () => {
    out.int8 = (await ds.query('SELECT 9007199254740991::int8 AS big'))[0].big
  })
  await step('concurrent', async () => {
    const pids = await Promise.all(Array.from({ length: 8 }, () => ds.query('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)')))
    out.concurrent = { n: pids.length, pids: new Set(pids.map((r) => r[0].pid)).size }
  })
  await step('terminated connections', async () => {
    out.terminated = await survivesTermination((q) => ds.query(q))
  })
  await step('close', () => ds.destroy())

  await step('iam_user', async () => {
    const app = await dataSource('iam', { options: searchPath(appSchema) }, [Owner, Pet]).initialize()
    try {
      await app.query('CREATE TABLE owner (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(30) NOT NULL, city varchar(80) NOT NULL, telephone varchar(20))')
      await app.getRepository('Owner').save({ name: 'Iam Owner', city: 'X' })
      out.iam = (await app.query('SELECT current_user AS who, current_schema() AS schema, (SELECT count(*)::int FROM owner) AS owners'))[0]
    } finally {
      await app.destroy()
    }
  })
  return out
})
