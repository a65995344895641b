// Thin worker-thread shim for stats-threads.ts: computes its share of one file's statistics
// (chunks claimed from a shared counter) with its own onnxruntime session and file handle.
import {parentPort} from 'node:worker_threads';
import {LoraFileError} from '../lora/safetensors.js';
import {computeStatsPart, planStats} from '../lora/stats.js';
import {jsKernels} from './kernels/js-kernels.js';
import {createOrtKernels} from './kernels/ort-kernels.js';
import type {EngineKernels} from './kernels/types.js';
import type {StatsThreadReply, StatsThreadRequest} from './stats-threads.js';

// Created at start-up, so the session is ready by the time the first file's headers are read.
// One intra-op thread: the threads themselves are the parallelism.
const kernels: Promise<EngineKernels> = createOrtKernels('cpu', {threads: 1}).catch(() => jsKernels);

async function share(request: StatsThreadRequest): Promise<StatsThreadReply> {
	try {
		const plan = planStats(request.header, request.model);
		const next = new Int32Array(request.counter);
		const claim = (): number | null => {
			const index = Atomics.add(next, 0, 1);
			return index < plan.chunks.length ? index : null;
		};

		const part = await computeStatsPart(request.header, request.model, plan, {kernels: await kernels, claim});
		return {id: request.id, part};
	} catch (error) {
		return {
			id: request.id,
			error: {
				message: error instanceof Error ? error.message : String(error),
				reason: error instanceof LoraFileError ? error.reason : undefined,
			},
		};
	}
}

const port = parentPort;
if (port) {
	void kernels.then(() => {
		const ready: StatsThreadReply = {ready: true};
		port.postMessage(ready);
	});
	port.on('message', (request: StatsThreadRequest) => {
		void share(request).then(reply => {
			port.postMessage(reply);
		});
	});
}
