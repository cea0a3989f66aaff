import { fsSuite } from './fs-suite.js';

fsSuite('no-split');
