// Thin worker-thread shim for stats-threads.ts: computes its share of one file's statistics
// (chunks claimed from a shared counter) with its own onnxruntime session and file handle.
import {parentPort} from 'node:worker_threads';
import {LoraFileError} from '../lora/safetensors.js';
import {computeStatsPart, planStats, sharedClaim} from '../lora/stats.js';
import {createOrtKernels} from './kernels/ort-kernels.js';
import type {EngineKernels} from './kernels/types.js';
import type {StatsThreadReply, StatsThreadRequest} from './stats-threads.js';

// Created at start-up, so the session is ready when the first share comes. One intra-op thread:
// the threads themselves are the parallelism. No plain-JS fallback: its float64 Grams would round
// differently from the main thread's, so without onnxruntime this helper fails its shares and the
// main thread computes the file alone.
const kernels: Promise<EngineKernels> = createOrtKernels('cpu', {threads: 1});
kernels.catch(() => undefined);

async function share(request: StatsThreadRequest): Promise<StatsThreadReply> {
	try {
		const plan = planStats(request.header, request.model);
		const part = await computeStatsPart(request.header, request.model, plan, {kernels: await kernels, claim: sharedClaim(request.counter, plan.chunks.length)});
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
	const ready: StatsThreadReply = {ready: true};
	void kernels.then(() => {
		port.postMessage(ready);
	}, () => {
		port.postMessage(ready);
	});
	port.on('message', (request: StatsThreadRequest) => {
		void share(request).then(reply => {
			port.postMessage(reply);
		});
	});
}
