import { proxyRouter } from './implementations.ts';
import { runRoutingSuite } from './suite.ts';

runRoutingSuite(proxyRouter);
