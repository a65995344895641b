// Job kinds register their handler here (each module under jobs/ calls registerJob on import;
// jobs/index.ts imports them all), so the server dispatches by kind without knowing any job.
import type {JobHandler} from './job-context.js';
import type {JobKind} from './protocol.js';

const handlers = new Map<string, JobHandler<JobKind>>();

export function registerJob<K extends JobKind>(kind: K, handler: JobHandler<K>): void {
	handlers.set(kind, handler as unknown as JobHandler<JobKind>);
}

export function getJobHandler(kind: string): JobHandler<JobKind> | undefined {
	return handlers.get(kind);
}

export function registeredJobKinds(): string[] {
	return [...handlers.keys()].sort();
}

/** Removes a kind; for tests that register throwaway handlers. */
export function unregisterJob(kind: string): void {
	handlers.delete(kind);
}
