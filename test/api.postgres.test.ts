import { apiSuite } from './support/api-suite.js'

apiSuite('postgres')
