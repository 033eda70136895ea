import { inProcessServer } from './implementations.ts';
import { runRoutingSuite } from './suite.ts';

runRoutingSuite(inProcessServer);
