import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Counter } from 'prom-client';
import type { Logger } from '../logger.ts';

/**
 * Failures of a connection before the app could answer it (Node's `clientError`): the request took longer
 * to arrive than the receive timeout, its headers were too large, or it was not HTTP. Each is answered with
 * a JSON error, `Connection: close`, and the connection closed, as the error middleware would; the app
 * never saw them, so they are counted and logged here.
 *
 * @example
 * server.on('clientError', clientErrorHandler({ logger, counter }));
 */

export type ConnectionErrorKind = 'receive_timeout' | 'headers_too_large' | 'malformed' | 'client_gone';

/** Status and `error_type` per kind; `client_gone` gets no answer (nobody reads it). */
const ANSWERS: Record<Exclude<ConnectionErrorKind, 'client_gone'>, { status: number; reason: string; errorType: string }> = {
  receive_timeout: { status: 408, reason: 'Request Timeout', errorType: 'request_timeout' },
  headers_too_large: { status: 431, reason: 'Request Header Fields Too Large', errorType: 'headers_too_large' },
  malformed: { status: 400, reason: 'Bad Request', errorType: 'validation' },
};

/** After answering, the rest the client sends is read and dropped this long at most, so it reads the answer rather than a reset. */
export const LINGER_AFTER_ERROR_MS = 2000;

export function connectionErrorKind(error: NodeJS.ErrnoException): ConnectionErrorKind {
  switch (error.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return 'receive_timeout';
    case 'HPE_HEADER_OVERFLOW':
      return 'headers_too_large';
    case 'ECONNRESET':
    case 'EPIPE':
    case 'HPE_INVALID_EOF_STATE':
      return 'client_gone';
    default:
      return 'malformed';
  }
}

const timedOut = new WeakSet<Socket>();
const answered = new WeakSet<Socket>();

/**
 * Whether the request's connection was closed by the receive timeout: its body then ends as "aborted",
 * which the app reports as 408 rather than as a client that went away.
 */
export function receiveTimedOut(req: IncomingMessage): boolean {
  return timedOut.has(req.socket);
}

export interface ClientErrorOptions {
  logger: Logger;
  counter?: Counter<'kind'>;
  /** The receive timeout in force, for the message. */
  receiveTimeoutMs: () => number;
}

export function clientErrorHandler(options: ClientErrorOptions): (error: NodeJS.ErrnoException, socket: Socket) => void {
  const logged = new Set<ConnectionErrorKind>();
  return (error, socket) => {
    const kind = connectionErrorKind(error);
    // After an answer, the client closing (or more bytes failing to parse) is the end of that story.
    if (answered.has(socket)) {
      if (kind === 'client_gone') socket.destroy();
      return;
    }
    // A client that reset or closed its connection is nobody to answer, nor a refusal to count (the access
    // log says 499 when its request had reached a handler).
    if (kind === 'client_gone') {
      socket.destroy();
      return;
    }
    options.counter?.inc({ kind });
    answered.add(socket);
    if (kind === 'receive_timeout') timedOut.add(socket);
    const answer = ANSWERS[kind];
    const message =
      kind === 'receive_timeout'
        ? `the request was not received within ${options.receiveTimeoutMs()} ms (serving.receiveTimeoutMs)`
        : kind === 'headers_too_large'
          ? 'the request headers are too large'
          : `malformed HTTP request (${error.code ?? error.message})`;
    // A slow or broken client can send thousands: the first of each kind is logged, the rest counted (and logged at debug).
    const fields = { kind, status: answer.status, remoteAddress: socket.remoteAddress, code: error.code };
    if (logged.has(kind)) options.logger.debug(fields, `connection answered ${answer.status}: ${message}`);
    else {
      logged.add(kind);
      options.logger.info(fields, `connection answered ${answer.status}: ${message} (further ones: http_connection_errors_total, and the debug log)`);
    }
    // Node attaches the response of the request being received; once it has sent anything, only closing is left.
    const response = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
    if (!socket.writable || response?.headersSent) {
      socket.destroy();
      return;
    }
    const body = JSON.stringify({ error: message, error_type: answer.errorType });
    socket.end(
      `HTTP/1.1 ${answer.status} ${answer.reason}\r\nConnection: close\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    // Closed at once with unread bytes, the socket would send a reset that can overtake the answer.
    const linger = setTimeout(() => socket.destroy(), LINGER_AFTER_ERROR_MS);
    linger.unref();
    socket.once('close', () => clearTimeout(linger));
  };
}
