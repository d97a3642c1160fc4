// Drizzle (node-postgres driver) through the tunnel: `drizzle({ client: pool })` with this
// package's Pool; Drizzle itself also imports `pg` for its type parsers.
import common from './common.cjs'
import { drizzle } from 'drizzle-orm/node-postgres'
import { pgTable, uuid, varchar, date, timestamp } from 'drizzle-orm/pg-core'
import { eq, asc, sql } from 'drizzle-orm'

const { driver, pgConfig, schemaName, searchPath, DDL, BIRTH_DATE, ADOPTED_AT, dateText, instantText, dbError, versionOf, main, TYPES_SQL, describeRow, survivesTermination } = common

const owner = pgTable('owner', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: varchar('name', { length: 30 }).notNull(),
  city: varchar('city', { length: 80 }).notNull(),
  telephone: varchar('telephone', { length: 20 }),
})
const pet = pgTable('pet', {
  id: uuid('id').primaryKey().defaultRandom(),
  name: varchar('name', { length: 30 }).notNull(),
  birthDate: date('birth_date').notNull(),
  adoptedAt: timestamp('adopted_at', { withTimezone: true, mode: 'date' }),
  ownerId: uuid('owner_id'),
})
const specialty = pgTable('specialty', { id: uuid('id').primaryKey().defaultRandom(), name: varchar('name', { length: 80 }).notNull() })
const vet = pgTable('vet', { id: uuid('id').primaryKey().defaultRandom(), name: varchar('name', { length: 30 }).notNull() })
const vetSpecialty = pgTable('vet_specialty', { id: uuid('id').primaryKey().defaultRandom(), vetId: uuid('vet_id').notNull(), specialtyId: uuid('specialty_id').notNull() })

main('drizzle', async (step) => {
  const out = { version: versionOf('drizzle-orm') }
  const { Pool } = driver()
  const schema = schemaName('drizzle_clinic')
  const appSchema = schemaName('drizzle_app')
  const adminPool = new Pool(pgConfig('admin', { max: 1 }))
  await step('create schemas', async () => {
    const admin = drizzle({ client: adminPool })
    await admin.execute(sql.raw(`CREATE SCHEMA ${schema}`))
    await admin.execute(sql.raw(`CREATE SCHEMA ${appSchema} AUTHORIZATION iam_user`))
  })
  await step('close admin', () => adminPool.end())

  const pool = new Pool(pgConfig('admin', { max: 4, options: searchPath(schema) }))
  // As pg asks of every app: idle clients' errors (a terminated connection) arrive on the pool.
  let idleErrors = 0
  pool.on('error', () => idleErrors++)
  const db = drizzle({ client: pool })
  await step('ddl', async () => {
    for (const ddl of DDL) await db.execute(sql.raw(ddl))
  })
  const ids = await step('insert', async () => {
    const [o] = await db.insert(owner).values({ name: 'John Doe', city: 'Anytown', telephone: '555-0100' }).returning({ id: owner.id })
    await db.insert(pet).values([
      { name: 'Pet1', birthDate: BIRTH_DATE, adoptedAt: new Date(ADOPTED_AT), ownerId: o.id },
      { name: 'Pet2', birthDate: '2020-05-05', ownerId: o.id },
    ])
    const specs = await db.insert(specialty).values([{ name: 'Exotic' }, { name: 'Dogs' }]).returning()
    const [v] = await db.insert(vet).values({ name: 'Akua Mansa' }).returning()
    await db.insert(vetSpecialty).values(specs.map((s) => ({ vetId: v.id, specialtyId: s.id })))
    out.idIsUuid = /^[0-9a-f-]{36}$/.test(o.id)
    return { owner: o.id, vet: v.id }
  })
  await step('join', async () => {
    const pets = await db
      .select({ name: pet.name, birthDate: pet.birthDate, adoptedAt: pet.adoptedAt, owner: owner.name })
      .from(pet)
      .innerJoin(owner, eq(owner.id, pet.ownerId))
      .orderBy(asc(pet.name))
    out.join = pets.map((p) => `${p.owner}/${p.name}`)
    out.birthDate = dateText(pets[0].birthDate)
    out.adoptedAt = instantText(pets[0].adoptedAt)
  })
  await step('many-to-many', async () => {
    const vs = await db
      .select({ name: specialty.name })
      .from(vet)
      .innerJoin(vetSpecialty, eq(vetSpecialty.vetId, vet.id))
      .innerJoin(specialty, eq(specialty.id, vetSpecialty.specialtyId))
      .where(eq(vet.id, ids.vet))
      .orderBy(asc(specialty.name))
    out.vetSpecialties = vs.map((r) => r.name)
  })
  await step('update', async () => {
    out.updated = (await db.update(owner).set({ city: 'Othertown' }).where(eq(owner.id, ids.owner))).rowCount
    out.city = (await db.select({ city: owner.city }).from(owner).where(eq(owner.id, ids.owner)))[0].city
  })
  await step('delete', async () => {
    out.deleted = (await db.delete(pet).where(eq(pet.name, 'Pet2'))).rowCount
  })
  await step('transactions', async () => {
    await db.transaction(async (tx) => {
      await tx.insert(owner).values({ name: 'Committed', city: 'A' })
    })
    const rolledBack = await db
      .transaction(async (tx) => {
        await tx.insert(owner).values({ name: 'RolledBack', city: 'B' })
        throw new Error('roll back')
      })
      .catch((e) => e.message === 'roll back')
    if (!rolledBack) throw new Error('the rolled-back transaction failed otherwise')
    out.afterTx = (await db.select({ name: owner.name }).from(owner).orderBy(asc(owner.name))).map((r) => r.name)
  })
  await step('raw', async () => {
    out.raw = (await db.execute(sql`SELECT 1 + ${41}::int AS n, ${'x'}::text AS s`)).rows[0]
  })
  await step('types', async () => {
    out.types = describeRow((await db.execute(sql.raw(TYPES_SQL))).rows[0])
  })
  await step('unique violation', async () => {
    try {
      await db.insert(owner).values({ name: 'Dup', city: 'C', telephone: '555-0100' })
      out.unique = 'no error'
    } catch (e) {
      out.unique = dbError(e)
    }
  })
  await step('concurrent', async () => {
    const pids = await Promise.all(Array.from({ length: 8 }, () => db.execute(sql`SELECT pg_backend_pid() AS pid, pg_sleep(0.05)`)))
    out.concurrent = { n: pids.length, pids: new Set(pids.map((r) => r.rows[0].pid)).size }
  })
  await step('terminated connections', async () => {
    out.terminated = await survivesTermination(async (q) => (await db.execute(sql.raw(q))).rows)
    out.idleErrors = idleErrors
  })
  await step('close', () => pool.end())

  const appPool = new Pool(pgConfig('iam', { max: 2, options: searchPath(appSchema) }))
  await step('iam_user', async () => {
    const app = drizzle({ client: appPool })
    await app.execute(sql.raw('CREATE TABLE owner (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(30) NOT NULL, city varchar(80) NOT NULL, telephone varchar(20))'))
    await app.insert(owner).values({ name: 'Iam Owner', city: 'X' })
    out.iam = (await app.execute(sql`SELECT current_user AS who, current_schema() AS schema, (SELECT count(*)::int FROM owner) AS owners`)).rows[0]
  })
  await step('close iam_user', () => appPool.end())
  return out
})
