// The typed message protocol between the dashboard/CLI (client) and the engine worker process.
// Only small results cross it: the engine reads tensors from disk itself.

export type Device = 'cpu' | 'cuda';
export type DevicePreference = 'auto' | 'cpu' | 'cuda';

/**
 * Registry of job kinds: each job module adds its own entry by declaration merging, e.g.
 *
 *   declare module '../protocol.js' {
 *     interface JobKinds { hash: {params: {path: string}; result: FileHashes} }
 *   }
 *
 * so the protocol stays typed end to end without one file owning every job's types.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface JobKinds {}

export type JobKind = keyof JobKinds & string;
export type JobParams<K extends JobKind> = JobKinds[K] extends {params: infer P} ? P : never;
export type JobResult<K extends JobKind> = JobKinds[K] extends {result: infer R} ? R : never;

export type SerializedError = {
	name: string;
	message: string;
	/** One-line reason fit for the status line. */
	reason: string;
	filePath?: string;
	stack?: string;
};

export type EngineRequest =
	| {type: 'run'; jobId: string; kind: JobKind; params: unknown}
	| {type: 'cancel'; jobId: string}
	| {type: 'shutdown'};

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export type EngineEvent =
	| {
		type: 'ready';
		device: Device;
		detail: string;
		/** Set when the requested device cannot be used (e.g. --device cuda without the libraries); every job then fails with it. */
		error?: SerializedError;
	}
	| {
		type: 'progress';
		jobId: string;
		done: number;
		total: number;
		label?: string;
		/** Throughput where the job counts bytes. */
		bytesPerSecond?: number;
		etaSeconds?: number;
	}
	| {type: 'result'; jobId: string; kind: JobKind; result: unknown}
	| {type: 'error'; jobId: string; error: SerializedError}
	| {type: 'cancelled'; jobId: string}
	| {type: 'log'; level: LogLevel; message: string; jobId?: string};

export class CancelledError extends Error {
	constructor() {
		super('cancelled');
		this.name = 'CancelledError';
	}
}

export function serializeError(error: unknown): SerializedError {
	if (error instanceof Error) {
		const withReason = error as Error & {reason?: unknown; filePath?: unknown};
		const reason = typeof withReason.reason === 'string' ? withReason.reason : (error.message.split('\n')[0] ?? error.name);
		return {
			name: error.name,
			message: error.message,
			reason,
			filePath: typeof withReason.filePath === 'string' ? withReason.filePath : undefined,
			stack: error.stack,
		};
	}

	const text = String(error);
	return {name: 'Error', message: text, reason: text.split('\n')[0] ?? text};
}

export function deserializeError(serialized: SerializedError): Error & {reason: string; filePath?: string} {
	const error = new Error(serialized.message) as Error & {reason: string; filePath?: string};
	error.name = serialized.name;
	error.reason = serialized.reason;
	if (serialized.filePath !== undefined) {
		error.filePath = serialized.filePath;
	}

	if (serialized.stack !== undefined) {
		error.stack = serialized.stack;
	}

	return error;
}
