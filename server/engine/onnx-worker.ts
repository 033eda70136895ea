import { parentPort, workerData } from 'node:worker_threads';
import { firstLine } from '../errors.ts';
import { OnnxSession, type OnnxModelOptions, type WorkerReply, type WorkerRequest } from './onnx-model.ts';

/** The worker side of WorkerThreadModel: loads one session, then runs batches one at a time, in arrival order. */

const port = parentPort;
if (!port) throw new Error('onnx-worker.ts runs as a worker thread (started by WorkerThreadModel)');
const reply = (message: WorkerReply) => port.postMessage(message);

let session: OnnxSession;
try {
  session = await OnnxSession.load(workerData as OnnxModelOptions);
  reply({ type: 'loaded', description: session.description });
} catch (error) {
  reply({ type: 'load-failed', message: firstLine(error) });
  process.exit(0);
}

// Runs and the final release are chained, so a close waits for the batches sent before it.
let chain: Promise<void> = Promise.resolve();
port.on('message', (request: WorkerRequest) => {
  chain = chain.then(async () => {
    if (request.type === 'close') {
      await session.release();
      port.close();
      return;
    }
    try {
      reply({ type: 'result', id: request.id, result: await session.runFlat(request.batch) });
    } catch (error) {
      reply({ type: 'error', id: request.id, message: firstLine(error) });
    }
  });
});
