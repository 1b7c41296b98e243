// A trivial WebSocket server for the load generator's ceilings.
//
//   node echo.mjs      -> prints {"port": N} once listening on 127.0.0.1
//
// Echoes every message, except {"burst": N}: then it sends N change events,
// shaped as the gateway's, to every connected client (each event serialised
// once, sent to all).
import { WebSocketServer } from 'ws';

const now = () => performance.timeOrigin + performance.now();
const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });

function burst(count) {
  // Corked, each socket gets its frames in a few large writes: the server
  // stays cheap, so the figure is the receiving side's.
  for (const client of server.clients) client._socket.cork();
  for (let seq = 1; seq <= count; seq++) {
    const event = JSON.stringify({ event: 'bench.model.change', data: { values: { seq, t: now() } } });
    for (const client of server.clients) client.send(event);
  }
  for (const client of server.clients) client._socket.uncork();
}

server.on('listening', () => console.log(JSON.stringify({ port: server.address().port })));
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data[0] === 0x7b && data.toString().startsWith('{"burst":')) {
      burst(JSON.parse(data.toString()).burst);
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});
