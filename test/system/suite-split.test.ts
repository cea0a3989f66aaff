import { fsSuite } from './fs-suite.js';

fsSuite('split');
