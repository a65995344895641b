import type {Device, JobKind, JobParams, JobResult, LogLevel} from './protocol.js';

/**
 * What a job handler gets from the engine server. Handlers are async and must await
 * (file reads, kernel calls, or `ctx.yield()`) often enough that a cancel message is seen.
 */
export type JobContext = {
	jobId: string;
	/** Aborted when the client cancels this job; check it between modules. */
	signal: AbortSignal;
	/** Report progress; the server throttles to ~20 events/s and adds throughput and ETA. */
	progress: (done: number, total: number, label?: string, bytesDone?: number) => void;
	log: (level: LogLevel, message: string) => void;
	/** Throws CancelledError when the job was cancelled; lets pending messages in. */
	yield: () => Promise<void>;
	device: Device;
	/** Per-process cache shared across jobs, keyed by the caller (e.g. path + size + mtime). */
	cache: Map<string, unknown>;
};

export type JobHandler<K extends JobKind> = (params: JobParams<K>, ctx: JobContext) => Promise<JobResult<K>>;
