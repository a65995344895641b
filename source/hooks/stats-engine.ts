// What the dashboard needs from the engine: run a stats job with progress, cancel it, hear its log.
// The real one wraps H4's EngineClient (a separate process); tests pass a fake.
import {EngineClient} from '../engine/client.js';
import type {DevicePreference, JobKind, JobParams, JobResult} from '../engine/protocol.js';
import type {LoraStats} from '../lora/types.js';
import type {JobProgress} from '../state/tools-types.js';

export type EngineLog = {level: 'debug' | 'info' | 'warn' | 'error'; message: string};

export type StatsEngine = {
	runStats: (path: string, onProgress: (done: number, total: number) => void) => {jobId: string; promise: Promise<LoraStats>};
	cancel: (jobId: string) => void;
	/** Subscribes to log lines and device reports; returns the unsubscribe function. */
	onEvent: (listener: (event: EngineNotice) => void) => () => void;
	close: () => Promise<void>;
	/** Runs any engine job (decompose, resize-write, hash, meta-save: the dashboard's tools); engines without it offer statistics only. */
	runJob?: <K extends JobKind>(kind: K, params: JobParams<K>, onProgress: (progress: JobProgress) => void) => {jobId: string; promise: Promise<JobResult<K>>};
};

export type EngineNotice = {type: 'log'; log: EngineLog} | {type: 'ready'; device: string; detail: string} | {type: 'failed'; reason: string};

export type EngineFactory = () => StatsEngine;

export function engineFactory(device: DevicePreference): EngineFactory {
	return () => {
		const client = EngineClient.start({device});
		return {
			runStats(path, onProgress) {
				return client.run('stats', {path}, {onProgress: event => onProgress(event.done, event.total)});
			},
			cancel(jobId) {
				client.cancel(jobId);
			},
			runJob(kind, params, onProgress) {
				return client.run(kind, params, {
					onProgress: ({done, total, label, bytesPerSecond, etaSeconds}) => onProgress({done, total, label, bytesPerSecond, etaSeconds}),
				});
			},
			onEvent(listener) {
				return client.onEvent(event => {
					if (event.type === 'log') {
						listener({type: 'log', log: {level: event.level, message: event.message}});
					} else if (event.type === 'ready') {
						listener(event.error ? {type: 'failed', reason: event.error.reason} : {type: 'ready', device: event.device, detail: event.detail});
					}
				});
			},
			async close() {
				await client.close();
			},
		};
	};
}
