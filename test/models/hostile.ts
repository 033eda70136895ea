import net from 'node:net';

/**
 * A source on 127.0.0.1 that misbehaves on purpose, written on raw sockets so that every byte and every
 * close is where the test puts it (node:http would add its own framing and timing). One request per
 * connection; each path is served by the behaviour set for it.
 */

export type Behaviour =
  /** Serves `body` (Range requests get a 206), then closes the connection at once (a FIN right after the body). */
  | { kind: 'file'; body: Buffer }
  /** Accepts the request and never answers. */
  | { kind: 'stall-headers' }
  /** Sends the headers and the first `sent` bytes, then nothing more; with `once`, later requests get the file. */
  | { kind: 'stall-body'; body: Buffer; sent: number; once?: boolean }
  /** Announces `contentLength` (or nothing) and sends zeros until the client goes away. */
  | { kind: 'endless'; contentLength?: number };

export interface HostileRequest {
  path: string;
  range: string | undefined;
}

export interface HostileSource {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  requests: HostileRequest[];
  serve(path: string, behaviour: Behaviour): void;
  reset(): void;
  close(): Promise<void>;
}

function sendFile(socket: net.Socket, body: Buffer, range: string | undefined): void {
  const start = Number(/^bytes=(\d+)-$/.exec(range ?? '')?.[1] ?? Number.NaN);
  const head = Number.isNaN(start)
    ? `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n`
    : `HTTP/1.1 206 Partial Content\r\nContent-Length: ${body.length - start}\r\nContent-Range: bytes ${start}-${body.length - 1}/${body.length}\r\nConnection: close\r\n\r\n`;
  socket.write(head);
  socket.write(Number.isNaN(start) ? body : body.subarray(start));
  socket.end();
}

function sendEndless(socket: net.Socket, contentLength: number | undefined): void {
  socket.write(`HTTP/1.1 200 OK\r\n${contentLength !== undefined ? `Content-Length: ${contentLength}\r\n` : ''}Connection: close\r\n\r\n`);
  const zeros = Buffer.alloc(64 * 1024);
  const pump = () => {
    while (!socket.destroyed && socket.write(zeros));
  };
  socket.on('drain', pump);
  pump();
}

export async function startHostileSource(): Promise<HostileSource> {
  const behaviours = new Map<string, Behaviour>();
  const requests: HostileRequest[] = [];
  const sockets = new Set<net.Socket>();

  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let head = '';
    const onData = (data: Buffer) => {
      head += data.toString('latin1');
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      socket.off('data', onData);
      const [requestLine = '', ...lines] = head.slice(0, end).split('\r\n');
      const path = requestLine.split(' ')[1] ?? '/';
      const range = lines.find((l) => /^range:/i.test(l))?.replace(/^range:\s*/i, '');
      requests.push({ path, range });
      const behaviour = behaviours.get(path);
      if (!behaviour) {
        socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      switch (behaviour.kind) {
        case 'file':
          sendFile(socket, behaviour.body, range);
          return;
        case 'stall-headers':
          return;
        case 'stall-body':
          if (behaviour.once && requests.filter((r) => r.path === path).length > 1) {
            sendFile(socket, behaviour.body, range);
            return;
          }
          socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${behaviour.body.length}\r\nConnection: close\r\n\r\n`);
          socket.write(behaviour.body.subarray(0, behaviour.sent));
          return;
        case 'endless':
          sendEndless(socket, behaviour.contentLength);
          return;
      }
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as net.AddressInfo;

  return {
    origin: `http://127.0.0.1:${port}`,
    requests,
    serve: (path, behaviour) => behaviours.set(path, behaviour),
    reset() {
      behaviours.clear();
      requests.length = 0;
      for (const socket of sockets) socket.destroy();
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
