// The load generator's RES client (Node's own modules only, so a test runs
// it without bench/node_modules): the RES side, and RawClient, which carries
// it over a WebSocket on a bare TCP socket.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';

// The RES side of a client: requests with ids, events to a callback; the
// subclass carries the messages (`send`, and `received` for each one).
export class ResClient {
  constructor() {
    this.nextId = 1;
    this.pending = new Map();
    this.onEvent = null;
  }

  received(data) {
    const msg = JSON.parse(data.toString());
    if (msg.id !== undefined) {
      const resolve = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (resolve) resolve(msg);
    } else if (msg.event !== undefined && this.onEvent) {
      this.onEvent(msg);
    }
  }

  request(method, params) {
    const id = this.nextId++;
    const message = params === undefined ? { id, method } : { id, method, params };
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.send(JSON.stringify(message));
    });
  }

  // request() that throws on an error response; returns the result.
  async call(method, params) {
    const msg = await this.request(method, params);
    if (msg.error) throw new Error(`${method}: ${JSON.stringify(msg.error)}`);
    return msg.result;
  }
}

// A RES client on a bare TCP socket, speaking just the WebSocket the bench
// needs (RFC 6455: the opening handshake with its accept key checked; text
// frames, masked on the way out; fragments, close and ping). Against Node's
// `ws` (bench/README.md, 2026-12-07 23:05-23:41) a load generator spent
// 0.29 ms of CPU on a connection instead of 0.41, and a quarter to a third
// less during an event; with `ws` the ten load generators of the 50,000
// connections took more of the machine than the gateway they measure.
const READ_BUFFER = Buffer.allocUnsafe(65536);

export class RawClient extends ResClient {
  static open(url, { localAddress } = {}) {
    return new Promise((resolve, reject) => new RawClient(url, localAddress, resolve, reject));
  }

  constructor(url, localAddress, resolve, reject) {
    super();
    const { hostname, port, pathname, host } = new URL(url);
    const key = randomBytes(16).toString('base64');
    this.accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
    this.opened = () => { this.opened = null; resolve(this); };
    this.refused = reject;
    this.head = Buffer.alloc(0); // the handshake's answer until it is complete; null after
    this.buffered = null;
    this.fragments = [];
    this.mask = randomBytes(4);
    // Reads land in the process's one buffer and come to `arrived` directly, without a stream.
    this.socket = net.connect({
      host: hostname, port: Number(port), localAddress, noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (length, buffer) => this.arrived(buffer.subarray(0, length)) },
    });
    this.socket.on('error', (error) => this.opened && reject(error)); // after the handshake: the close ends it
    this.socket.once('close', () => this.opened && reject(new Error('closed during the handshake')));
    this.socket.once('connect', () => {
      // The head `ws` sends, in its order.
      this.socket.write(`GET ${pathname} HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n`
        + `Connection: Upgrade\r\nUpgrade: websocket\r\nHost: ${host}\r\n\r\n`);
    });
  }

  arrived(chunk) {
    if (this.head === null) {
      this.frames(chunk);
      return;
    }
    const head = this.head = Buffer.concat([this.head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    this.head = null;
    const lines = head.subarray(0, end).toString('latin1').split('\r\n');
    const accepted = lines.some((line) => /^sec-websocket-accept:/i.test(line)
      && line.slice(line.indexOf(':') + 1).trim() === this.accept);
    if (!/^HTTP\/1\.1 101 /.test(lines[0]) || !accepted) {
      this.socket.destroy();
      this.refused(new Error(`handshake refused: ${lines[0]}`));
      return;
    }
    this.opened();
    if (head.length > end + 4) this.frames(head.subarray(end + 4));
  }

  // Every whole frame in what has arrived; the rest, copied out of the
  // shared read buffer, waits for more.
  frames(chunk) {
    let data = this.buffered ? Buffer.concat([this.buffered, chunk]) : chunk;
    this.buffered = null;
    while (data.length >= 2) {
      const first = data[0];
      let length = data[1] & 0x7f;
      let start = 2;
      if (data[1] & 0x80) throw new Error('the server masked a frame');
      if (length === 126) {
        if (data.length < 4) break;
        length = data.readUInt16BE(2);
        start = 4;
      } else if (length === 127) {
        if (data.length < 10) break;
        length = Number(data.readBigUInt64BE(2));
        start = 10;
      }
      if (data.length < start + length) break;
      this.frame(first, data.subarray(start, start + length));
      data = data.subarray(start + length);
    }
    if (data.length) this.buffered = Buffer.from(data);
  }

  frame(first, payload) {
    const opcode = first & 0x0f;
    if (opcode === 0x8) this.socket.destroy();
    else if (opcode === 0x9) this.sendFrame(0x8a, payload);
    else if (opcode === 0x1 || opcode === 0x0) {
      if (!(first & 0x80)) this.fragments.push(Buffer.from(payload)); // out of the shared buffer
      else if (!this.fragments.length) this.received(payload);
      else {
        const message = Buffer.concat([...this.fragments, payload]);
        this.fragments = [];
        this.received(message);
      }
    }
  }

  sendFrame(first, payload) {
    const length = payload.length;
    const start = length < 126 ? 6 : length < 65536 ? 8 : 14;
    const frame = Buffer.allocUnsafe(start + length);
    frame[0] = first;
    if (length < 126) frame[1] = 0x80 | length;
    else if (length < 65536) { frame[1] = 0x80 | 126; frame.writeUInt16BE(length, 2); }
    else { frame[1] = 0x80 | 127; frame.writeBigUInt64BE(BigInt(length), 2); }
    this.mask.copy(frame, start - 4);
    for (let i = 0; i < length; i++) frame[start + i] = payload[i] ^ this.mask[i & 3];
    this.socket.write(frame);
  }

  send(text) {
    this.sendFrame(0x81, Buffer.from(text));
  }

  // Reset, not closed: a closed socket stays in TIME_WAIT for a minute, and
  // the next scenario's clients, bound to the same source addresses, then
  // cost the kernel a search for a free port each.
  close() {
    this.socket.resetAndDestroy();
  }
}
