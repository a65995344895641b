// Per-process kernel instances for the engine's jobs: onnxruntime on the chosen device, or the
// plain-JS kernels when onnxruntime cannot load (the reason goes to the log, never to stdout).
import type {Device, LogLevel} from '../protocol.js';
import {jsKernels} from './js-kernels.js';
import {createOrtKernels} from './ort-kernels.js';
import type {EngineKernels} from './types.js';

export type {EngineKernels} from './types.js';
export {jsKernels} from './js-kernels.js';
export {createOrtKernels} from './ort-kernels.js';

const byDevice = new Map<Device, Promise<EngineKernels>>();

/**
 * Kernels for `device`, created on first use and shared by every job in this process. When
 * onnxruntime fails on CUDA it retries on CPU, then falls back to plain JS.
 */
export async function getEngineKernels(device: Device, log: (level: LogLevel, message: string) => void = () => undefined): Promise<EngineKernels> {
	let kernels = byDevice.get(device);
	if (!kernels) {
		kernels = (async () => {
			try {
				return await createOrtKernels(device);
			} catch (error) {
				const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
				if (device === 'cuda') {
					log('warn', `onnxruntime on cuda failed (${reason}); using cpu`);
					return getEngineKernels('cpu', log);
				}

				log('warn', `onnxruntime failed to load (${reason}); using plain-JS kernels`);
				return jsKernels;
			}
		})();
		byDevice.set(device, kernels);
	}

	return kernels;
}

/** Releases every cached session (tests, shutdown). */
export async function disposeEngineKernels(): Promise<void> {
	const all = [...byDevice.values()];
	byDevice.clear();
	await Promise.all(all.map(async kernels => (await kernels).dispose()));
}
