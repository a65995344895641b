// Weight statistics for the commands that print them (`inspect -w`, `compare`): onnxruntime kernels
// and helper threads for large inputs, plain JS for small ones, where loading onnxruntime (~55 ms)
// would cost more than it saves.
import {stat} from 'node:fs/promises';
import process from 'node:process';
import {jsKernels} from '../lora/linalg.js';
import {computeStatsWithModel} from '../lora/stats.js';
import type {GramKernels, LoraModel, LoraStats, SafetensorsHeader} from '../lora/types.js';

const largeInputBytes = 32 * 1024 * 1024;

/** onnxruntime kernels when the files are large enough to repay loading it; plain JS otherwise. */
export async function chooseStatsKernels(files: readonly string[]): Promise<{kernels: GramKernels; dispose: () => Promise<void>}> {
	let totalBytes = 0;
	for (const file of files) {
		// A file that cannot be stat'ed counts as empty; reading it reports why.
		totalBytes += await stat(file).then(info => info.size, () => 0);
	}

	if (totalBytes < largeInputBytes) {
		return {kernels: jsKernels, dispose: async () => undefined};
	}

	try {
		const engine = await import('../engine/kernels/index.js');
		const kernels = await engine.getEngineKernels('cpu');
		return {kernels, dispose: engine.disposeEngineKernels};
	} catch {
		return {kernels: jsKernels, dispose: async () => undefined};
	}
}

/**
 * Statistics of one file: a large file with onnxruntime kernels is shared with helper threads
 * (engine/stats-threads.ts) when the machine has a core to spare, else computed here.
 */
export async function statsOf(header: SafetensorsHeader, model: LoraModel, kernels: GramKernels): Promise<{stats: LoraStats; model: LoraModel}> {
	const tensorBytes = header.sizeBytes - header.dataOffset;
	if ((kernels as {backend?: string}).backend === 'onnxruntime' && process.env['LORASCOPE_STATS_THREADS'] !== '0') {
		const threads = await import('../engine/stats-threads.js');
		// Real LoRAs have a few thousand tensors; a hostile million-entry header is not worth
		// copying to other threads, and a file without modules (a checkpoint) has little to share.
		if (tensorBytes >= threads.threadedStatsMinBytes && model.modules.length > 0 && header.tensors.length <= threads.threadedStatsMaxTensors && threads.defaultStatsHelpers() > 0) {
			return threads.computeStatsThreaded(header, model, kernels, threads.sharedStatsThreads());
		}
	}

	return computeStatsWithModel(header, model, {kernels});
}
