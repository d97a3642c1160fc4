'use strict'
// The tests' `require('../../lib')`: whatever `pg` resolves to in this tree (node_modules/pg is
// this package in ours/, real pg in real/), the way an application aliases pg.
module.exports = require('pg')
