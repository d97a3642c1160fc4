'use strict'
module.exports = require('pg').Client
