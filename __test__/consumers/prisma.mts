// Prisma 7 through the tunnel: the generated client with `new PrismaPg(pool)` over this package's
// Pool. Tables come from SQL (Prisma's migrations need a schema engine; DSQL takes one DDL per
// transaction anyway); the client is generated into .cache/ by the spec before this runs.
import common from './common.cjs'
import { PrismaPg } from '@prisma/adapter-pg'
import pgEsm from 'pg'
import { Prisma, PrismaClient } from './generated/prisma/client.ts'

const { driver, pgConfig, schemaName, searchPath, DDL, BIRTH_DATE, ADOPTED_AT, instantText, dbError, versionOf, main, TYPES_SQL, describeRow, survivesTermination, closedPort } = common

/** Prisma reads a `@db.Date` as UTC midnight. */
const utcDate = (d: Date) => d.toISOString().slice(0, 10)

type Step = <T>(where: string, f: () => T | Promise<T>) => Promise<T | undefined>

main('prisma', async (step: Step) => {
  const out: Record<string, unknown> = { version: versionOf('@prisma/client') }
  const { Pool } = driver()
  // The adapter imports pg as an ES module and checks `pool instanceof pg.Pool`: both entries must be one module.
  out.esmSameModule = pgEsm.Pool === Pool && pgEsm.types === driver().types
  const schema = schemaName('prisma_clinic')
  const appSchema = schemaName('prisma_app')
  // Prisma sorts driver errors by shape: a refused connection is P1001 only when the error carries
  // code, syscall and errno as Node's socket errors do.
  await step('refused', async () => {
    const nobodyPool = new Pool(pgConfig('admin', { max: 1, port: await closedPort() }))
    const nobody = new PrismaClient({ adapter: new PrismaPg(nobodyPool) })
    try {
      await nobody.$queryRawUnsafe('SELECT 1')
      out.refused = 'connected'
    } catch (e) {
      const meta = (e as { meta?: { driverAdapterError?: { cause?: { kind?: string } } } }).meta
      out.refused = { error: (e as Error).name, code: (e as { code?: string }).code, kind: meta?.driverAdapterError?.cause?.kind }
    } finally {
      await nobody.$disconnect()
      await nobodyPool.end()
    }
  })
  const adminPool = new Pool(pgConfig('admin', { max: 1 }))
  await step('create schemas', async () => {
    await adminPool.query(`CREATE SCHEMA ${schema}`)
    await adminPool.query(`CREATE SCHEMA ${appSchema} AUTHORIZATION iam_user`)
  })
  await step('close admin', () => adminPool.end())

  const pool = new Pool(pgConfig('admin', { max: 4, options: searchPath(schema) }))
  const prisma = new PrismaClient({ adapter: new PrismaPg(pool, { schema }) })
  await step('ddl', async () => {
    for (const ddl of DDL) await prisma.$executeRawUnsafe(ddl)
  })
  const ids = await step('insert', async () => {
    const owner = await prisma.owner.create({
      data: {
        name: 'John Doe',
        city: 'Anytown',
        telephone: '555-0100',
        pets: {
          create: [
            { name: 'Pet1', birthDate: new Date(BIRTH_DATE), adoptedAt: new Date(ADOPTED_AT) },
            { name: 'Pet2', birthDate: new Date('2020-05-05') },
          ],
        },
      },
    })
    const vet = await prisma.vet.create({
      data: { name: 'Akua Mansa', specialties: { create: [{ specialty: { create: { name: 'Exotic' } } }, { specialty: { create: { name: 'Dogs' } } }] } },
    })
    out.idIsUuid = /^[0-9a-f-]{36}$/.test(owner.id)
    return { owner: owner.id, vet: vet.id }
  })
  await step('join', async () => {
    const pets = await prisma.pet.findMany({ include: { owner: true }, orderBy: { name: 'asc' } })
    out.join = pets.map((p) => `${p.owner?.name}/${p.name}`)
    out.birthDate = utcDate(pets[0].birthDate)
    out.adoptedAt = instantText(pets[0].adoptedAt)
  })
  await step('many-to-many', async () => {
    const v = await prisma.vet.findUniqueOrThrow({ where: { id: ids!.vet }, include: { specialties: { include: { specialty: true } } } })
    out.vetSpecialties = v.specialties.map((s) => s.specialty.name).sort()
  })
  await step('update', async () => {
    out.updated = (await prisma.owner.updateMany({ where: { id: ids!.owner }, data: { city: 'Othertown' } })).count
    out.city = (await prisma.owner.findUniqueOrThrow({ where: { id: ids!.owner } })).city
  })
  await step('delete', async () => {
    out.deleted = (await prisma.pet.deleteMany({ where: { name: 'Pet2' } })).count
  })
  await step('transactions', async () => {
    await prisma.$transaction(async (tx) => {
      await tx.owner.create({ data: { name: 'Committed', city: 'A' } })
    })
    const rolledBack = await prisma
      .$transaction(async (tx) => {
        await tx.owner.create({ data: { name: 'RolledBack', city: 'B' } })
        throw new Error('roll back')
      })
      .catch((e: Error) => e.message === 'roll back')
    if (!rolledBack) throw new Error('the rolled-back transaction failed otherwise')
    out.afterTx = (await prisma.owner.findMany({ orderBy: { name: 'asc' } })).map((o) => o.name)
  })
  await step('raw', async () => {
    out.raw = (await prisma.$queryRaw<{ n: number; s: string }[]>`SELECT 1 + ${41}::int AS n, ${'x'}::text AS s`)[0]
  })
  await step('types', async () => {
    out.types = describeRow((await prisma.$queryRawUnsafe<Record<string, unknown>[]>(TYPES_SQL))[0])
  })
  await step('unique violation', async () => {
    try {
      await prisma.owner.create({ data: { name: 'Dup', city: 'C', telephone: '555-0100' } })
      out.unique = 'no error'
    } catch (e) {
      if (!(e instanceof Prisma.PrismaClientKnownRequestError)) throw e
      const cause = (e.meta?.driverAdapterError as { cause?: { originalCode?: string; constraint?: { index?: string } } } | undefined)?.cause
      out.unique = { code: cause?.originalCode, constraint: cause?.constraint?.index, prismaCode: e.code }
    }
  })
  await step('concurrent', async () => {
    const pids = await Promise.all(
      Array.from({ length: 8 }, () => prisma.$queryRaw<{ pid: number }[]>`SELECT pg_backend_pid() AS pid, pg_sleep(0.05)::text AS slept`),
    )
    out.concurrent = { n: pids.length, pids: new Set(pids.map((r) => r[0].pid)).size }
  })
  await step('terminated connections', async () => {
    out.terminated = await survivesTermination(
      (q: string) => prisma.$queryRawUnsafe<Record<string, unknown>[]>(q),
      (e: any) => e?.meta?.driverAdapterError?.cause?.originalCode ?? e?.code,
    )
  })
  await step('close', async () => {
    await prisma.$disconnect()
    await pool.end()
  })

  const appPool = new Pool(pgConfig('iam', { max: 2, options: searchPath(appSchema) }))
  const app = new PrismaClient({ adapter: new PrismaPg(appPool, { schema: appSchema }) })
  await step('iam_user', async () => {
    await app.$executeRawUnsafe('CREATE TABLE owner (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(30) NOT NULL, city varchar(80) NOT NULL, telephone varchar(20))')
    await app.owner.create({ data: { name: 'Iam Owner', city: 'X' } })
    out.iam = (await app.$queryRaw<unknown[]>`SELECT current_user::text AS who, current_schema()::text AS schema, (SELECT count(*)::int FROM owner) AS owners`)[0]
  })
  await step('close iam_user', async () => {
    await app.$disconnect()
    await appPool.end()
  })
  return out
})
