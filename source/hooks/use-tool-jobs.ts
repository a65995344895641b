// Starts the engine jobs the tools slice asks for (slots in 'queued' state: decompose, base-norms,
// resize-write, hash, meta-save), passes cancels on, and turns job events into reducer actions. After a write or a
// metadata save the file is read again (the watcher would too, later) so the list shows it at once.
import {useEffect, useRef} from 'react';
import {CancelledError} from '../engine/protocol.js';
import {isInside, queuedSlots, cancellingSlots, type AnySlot, type ToolAction, type ToolResult} from '../state/reducer-tools.js';
import type {Action} from '../state/reducer.js';
import type {BaseNormsSlot, SaveSlot, WriteSlot} from '../state/tools-types.js';
import type {AppState} from '../state/types.js';
import type {SharedEngine} from './shared-engine.js';
import type {StatsEngine} from './stats-engine.js';
import type {FolderSource} from './use-folder.js';

function reasonOf(error: unknown): string {
	if (error && typeof error === 'object' && 'reason' in error && typeof (error as {reason: unknown}).reason === 'string') {
		return (error as {reason: string}).reason;
	}

	return error instanceof Error ? (error.message.split('\n')[0] ?? error.name) : String(error);
}

type Started = {jobId: string; promise: Promise<ToolResult>};

type RunJob = NonNullable<StatsEngine['runJob']>;

/** Sends one queued slot to the engine; a string is why it cannot start. */
function startSlot(runJob: RunJob, slot: AnySlot, state: AppState, progress: Parameters<RunJob>[2]): Started | string {
	switch (slot.kind) {
		case 'decompose': {
			const {jobId, promise} = runJob('decompose', {path: (slot as AnySlot & {path: string}).path}, progress);
			return {jobId, promise: promise.then(value => ({kind: 'decompose', value}))};
		}

		case 'base-norms': {
			const base = slot as BaseNormsSlot;
			// fro_ckpt asks for ‖W‖_F only (read speed); the engine caches both norms on disk per checkpoint.
			const params = {basePath: base.basePath, loraPath: base.path, ...(base.need === 'both' ? {} : {need: base.need}), ...(base.subspace ? {subspace: true} : {})};
			const {jobId, promise} = runJob('base-norms', params, progress);
			return {jobId, promise: promise.then(value => ({kind: 'base-norms', value}))};
		}

		case 'hash': {
			const {jobId, promise} = runJob('hash', {path: (slot as AnySlot & {path: string}).path}, progress);
			return {jobId, promise: promise.then(value => ({kind: 'hash', value}))};
		}

		case 'resize-write': {
			const session = state.tools.resize;
			if (!session) {
				return 'write: the Resize view was closed';
			}

			const write = slot as WriteSlot;
			// The target the view showed (and asked about), so the file written is the one confirmed.
			const params = {
				path: session.path,
				method: write.method,
				outPath: write.target,
				overwrite: write.overwrite,
				...(write.baseNorms ? {baseNorms: write.baseNorms} : {}),
				...(write.basePath === undefined ? {} : {basePath: write.basePath}),
			};
			const {jobId, promise} = runJob('resize-write', params, progress);
			return {jobId, promise: promise.then(value => ({kind: 'resize-write', value}))};
		}

		case 'meta-save': {
			const save = slot as SaveSlot;
			const params = {path: save.path, metadata: save.metadata, expected: save.stamp, ...(save.knownDataSha256 === undefined ? {} : {knownDataSha256: save.knownDataSha256})};
			const {jobId, promise} = runJob('meta-save', params, progress);
			return {jobId, promise: promise.then(value => ({kind: 'meta-save', value}))};
		}
	}
}

export function useToolJobs(
	state: AppState,
	dispatch: (action: Action | Action[]) => void,
	getState: () => AppState,
	shared: SharedEngine,
	source: FolderSource,
	outDir: string | null,
	basePath: string | null = null,
): void {
	const sentCancels = useRef(new Set<string>());
	const queuedKey = queuedSlots(state.tools).map(slot => slot.requestId).join(',');
	const cancelKey = cancellingSlots(state.tools).map(slot => slot.jobId).join(',');

	useEffect(() => {
		dispatch({type: 'tools-config', outDir, basePath});
	}, [dispatch, outDir, basePath]);

	useEffect(() => {
		if (queuedKey === '') {
			return;
		}

		const current = getState();
		for (const slot of queuedSlots(current.tools)) {
			const engine = shared.get();
			if (!engine?.runJob) {
				const error = engine ? 'the engine here computes statistics only' : 'no engine: this session runs without one';
				dispatch({type: 'tool-job-refused', requestId: slot.requestId, error: `${slot.kind}: ${error}`});
				continue;
			}

			let startedId = '';
			const started = startSlot(engine.runJob.bind(engine), slot, current, progress => {
				// Progress arrives asynchronously, after the id is known.
				dispatch({type: 'tool-job-progress', jobId: startedId, progress});
			});
			if (typeof started === 'string') {
				dispatch({type: 'tool-job-refused', requestId: slot.requestId, error: started});
				continue;
			}

			const {jobId, promise} = started;
			startedId = jobId;
			dispatch({type: 'tool-job-started', requestId: slot.requestId, jobId});
			promise.then(
				async result => {
					// The list has the written or saved file before the job reports done, so what the
					// status line then offers (c compares, the edited value) is already there.
					await reloadAfter(result, slot, getState, source, dispatch).catch(() => undefined);
					dispatch({type: 'tool-job-done', jobId, result} satisfies ToolAction);
				},
				(error: unknown) => {
					dispatch(
						error instanceof CancelledError
							? {type: 'tool-job-cancelled', jobId}
							: {type: 'tool-job-failed', jobId, error: reasonOf(error), ...(error instanceof Error ? {errorName: error.name} : {})},
					);
				},
			);
		}
	}, [queuedKey, dispatch, getState, shared, source]);

	useEffect(() => {
		if (cancelKey === '') {
			return;
		}

		const engine = shared.get();
		for (const slot of cancellingSlots(getState().tools)) {
			if (slot.jobId !== undefined && !sentCancels.current.has(slot.jobId)) {
				sentCancels.current.add(slot.jobId);
				engine?.cancel(slot.jobId);
			}
		}
	}, [cancelKey, getState, shared]);
}

/** A written output inside the folder, or a file whose metadata was saved, is read again for the list. */
async function reloadAfter(result: ToolResult, slot: AnySlot, getState: () => AppState, source: FolderSource, dispatch: (action: Action | Action[]) => void): Promise<void> {
	let file: string | undefined;
	if (result.kind === 'resize-write') {
		const {folder} = getState();
		file = isInside(folder, result.value.outPath) && source.accepts(result.value.outPath) ? result.value.outPath : undefined;
	} else if (result.kind === 'meta-save') {
		file = (slot as SaveSlot).path;
	}

	if (file === undefined) {
		return;
	}

	const entry = source.loadExact ? await source.loadExact(file) : await source.load(file);
	dispatch({type: 'file-updated', entry});
}
