// Sequelize 6 through the tunnel, with this package injected as `dialectModule`.
'use strict'
const { driver, pgConfig, schemaName, searchPath, DDL, BIRTH_DATE, ADOPTED_AT, dateText, instantText, dbError, versionOf, main, TYPES_SQL, describeRow, survivesTermination, closedPort } = require('./common.cjs')
const { Sequelize, DataTypes, QueryTypes } = require('sequelize')

/** Sequelize's own option names for the same pg settings. */
function connect(role, extra = {}, override = {}) {
  const { host, port, user, password, database, ssl, ...rest } = { ...pgConfig(role), ...override }
  return new Sequelize({
    dialect: 'postgres',
    dialectModule: driver(),
    host,
    port,
    username: user,
    ...(password ? { password } : {}),
    database,
    dialectOptions: { ssl, ...rest, ...extra },
    pool: { max: 4, min: 0 },
    logging: false,
  })
}

function define(sequelize) {
  const common = { freezeTableName: true, timestamps: false }
  const id = { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 }
  const Owner = sequelize.define('owner', { id, name: { type: DataTypes.STRING(30), allowNull: false }, city: { type: DataTypes.STRING(80), allowNull: false }, telephone: DataTypes.STRING(20) }, common)
  const Pet = sequelize.define('pet', { id, name: { type: DataTypes.STRING(30), allowNull: false }, birth_date: { type: DataTypes.DATEONLY, allowNull: false }, adopted_at: DataTypes.DATE }, common)
  const Specialty = sequelize.define('specialty', { id, name: { type: DataTypes.STRING(80), allowNull: false } }, common)
  const Vet = sequelize.define('vet', { id, name: { type: DataTypes.STRING(30), allowNull: false } }, common)
  const VetSpecialty = sequelize.define('vet_specialty', { id, vet_id: DataTypes.UUID, specialty_id: DataTypes.UUID }, common)
  const noFk = { constraints: false }
  Owner.hasMany(Pet, { foreignKey: 'owner_id', ...noFk })
  Pet.belongsTo(Owner, { foreignKey: 'owner_id', ...noFk })
  Vet.belongsToMany(Specialty, { through: VetSpecialty, foreignKey: 'vet_id', otherKey: 'specialty_id', ...noFk })
  Specialty.belongsToMany(Vet, { through: VetSpecialty, foreignKey: 'specialty_id', otherKey: 'vet_id', ...noFk })
  return { Owner, Pet, Specialty, Vet, VetSpecialty }
}

main('sequelize', async (step) => {
  const out = { version: versionOf('sequelize') }
  const schema = schemaName('sqlz_clinic')
  const appSchema = schemaName('sqlz_app')
  // Sequelize sorts connection failures by the driver error's code.
  await step('refused', async () => {
    const nobody = connect('admin', {}, { port: await closedPort() })
    try {
      await nobody.authenticate()
      out.refused = 'connected'
    } catch (e) {
      out.refused = { error: e.name, code: e.parent?.code }
    } finally {
      await nobody.close()
    }
  })
  const admin = connect('admin')
  await step('create schemas', async () => {
    await admin.query(`CREATE SCHEMA ${schema}`)
    await admin.query(`CREATE SCHEMA ${appSchema} AUTHORIZATION iam_user`)
  })
  await step('close admin', () => admin.close())

  const sequelize = connect('admin', { options: searchPath(schema) })
  const { Owner, Pet, Specialty, Vet } = define(sequelize)
  await step('ddl', async () => {
    for (const ddl of DDL) await sequelize.query(ddl)
  })
  const ids = await step('insert', async () => {
    const owner = await Owner.create({ name: 'John Doe', city: 'Anytown', telephone: '555-0100' })
    await Pet.bulkCreate([
      { name: 'Pet1', birth_date: BIRTH_DATE, adopted_at: new Date(ADOPTED_AT), owner_id: owner.id },
      { name: 'Pet2', birth_date: '2020-05-05', owner_id: owner.id },
    ])
    const vet = await Vet.create({ name: 'Akua Mansa' })
    const specs = await Specialty.bulkCreate([{ name: 'Exotic' }, { name: 'Dogs' }])
    await vet.addSpecialties(specs)
    out.idIsUuid = /^[0-9a-f-]{36}$/.test(owner.id)
    return { owner: owner.id, vet: vet.id }
  })
  await step('join', async () => {
    const pets = await Pet.findAll({ include: Owner, order: [['name', 'ASC']] })
    out.join = pets.map((p) => `${p.owner.name}/${p.name}`)
    out.birthDate = dateText(pets[0].birth_date)
    out.adoptedAt = instantText(pets[0].adopted_at)
  })
  await step('many-to-many', async () => {
    const v = await Vet.findByPk(ids.vet, { include: Specialty })
    out.vetSpecialties = v.specialties.map((s) => s.name).sort()
  })
  await step('update', async () => {
    out.updated = (await Owner.update({ city: 'Othertown' }, { where: { id: ids.owner } }))[0]
    out.city = (await Owner.findByPk(ids.owner)).city
  })
  await step('delete', async () => {
    out.deleted = await Pet.destroy({ where: { name: 'Pet2' } })
  })
  await step('transactions', async () => {
    await sequelize.transaction(async (transaction) => {
      await Owner.create({ name: 'Committed', city: 'A' }, { transaction })
    })
    const rolledBack = await sequelize
      .transaction(async (transaction) => {
        await Owner.create({ name: 'RolledBack', city: 'B' }, { transaction })
        throw new Error('roll back')
      })
      .catch((e) => e.message === 'roll back')
    if (!rolledBack) throw new Error('the rolled-back transaction failed otherwise')
    out.afterTx = (await Owner.findAll({ order: [['name', 'ASC']] })).map((o) => o.name)
  })
  await step('raw', async () => {
    out.raw = (await sequelize.query('SELECT 1 + $1::int AS n, $2::text AS s', { bind: [41, 'x'], type: QueryTypes.SELECT }))[0]
  })
  await step('types', async () => {
    out.types = describeRow((await sequelize.query(TYPES_SQL, { type: QueryTypes.SELECT }))[0])
  })
  await step('unique violation', async () => {
    try {
      await Owner.create({ name: 'Dup', city: 'C', telephone: '555-0100' })
      out.unique = 'no error'
    } catch (e) {
      out.unique = { ...dbError(e), sequelizeError: e.name, fields: e.fields }
    }
  })
  await step('concurrent', async () => {
    const pids = await Promise.all(Array.from({ length: 8 }, () => sequelize.query('SELECT pg_backend_pid() AS pid, pg_sleep(0.05)', { type: QueryTypes.SELECT })))
    out.concurrent = { n: pids.length, pids: new Set(pids.map((r) => r[0].pid)).size }
  })
  await step('terminated connections', async () => {
    out.terminated = await survivesTermination((q) => sequelize.query(q, { type: QueryTypes.SELECT }))
  })
  await step('close', () => sequelize.close())

  const app = connect('iam', { options: searchPath(appSchema) })
  await step('iam_user', async () => {
    await app.query('CREATE TABLE owner (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name varchar(30) NOT NULL, city varchar(80) NOT NULL, telephone varchar(20))')
    await define(app).Owner.create({ name: 'Iam Owner', city: 'X' })
    out.iam = (await app.query('SELECT current_user AS who, current_schema() AS schema, (SELECT count(*)::int FROM owner) AS owners', { type: QueryTypes.SELECT }))[0]
  })
  await step('close iam_user', () => app.close())
  return out
})
