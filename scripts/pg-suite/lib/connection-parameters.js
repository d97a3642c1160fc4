'use strict'
module.exports = require('pg/lib/connection-parameters')
