// Peer for bench/uploads.py: the reference tus server (@tus/server + @tus/file-store), nothing else.
//
//   node bench/js/tus_server.mjs <port> <directory>
//
// Serves tus 1.0.0 at http://127.0.0.1:<port>/files, stores uploads under <directory>, prints
// "listening <port>" once it accepts connections and exits on SIGTERM/SIGINT.
import { FileStore } from '@tus/file-store';
import { Server } from '@tus/server';

const [port, directory] = process.argv.slice(2);
if (!port || !directory) {
  console.error('usage: node tus_server.mjs <port> <directory>');
  process.exit(2);
}

const tus = new Server({ path: '/files', datastore: new FileStore({ directory }) });
const http = tus.listen({ host: '127.0.0.1', port: Number(port) }, () => {
  console.log(`listening ${port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => http.close(() => process.exit(0)));
}
