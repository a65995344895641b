// Thin worker-thread shim for header-pool.ts: reads one file's header per message and answers with
// its light entry (loadEntry never throws; a bad file comes back as an entry with `error`).
import {parentPort} from 'node:worker_threads';
import {lightEntry, loadEntry} from './entry.js';
import type {HeaderReply, HeaderRequest} from './header-pool.js';

const port = parentPort;
if (port) {
	port.on('message', (request: HeaderRequest) => {
		void loadEntry(request.path, {training: false, blocking: true}).then(entry => {
			const reply: HeaderReply = {id: request.id, entry: lightEntry(entry)};
			port.postMessage(reply);
		});
	});
}
