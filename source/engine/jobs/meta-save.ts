// Job 'meta-save': replace a file's metadata (edit.ts saveMetadata: header rewritten, tensor bytes
// copied unchanged and checked by hash, atomic replace, sd-scripts hashes recomputed). It reads the
// whole data area once or twice, so the dashboard runs it here, off the UI thread, with progress.
// A file that changed on disk since the caller read it is refused (FileChangedError, one-line reason).
import {saveMetadata, type ReadStamp} from '../../lora/edit.js';
import type {JobContext} from '../job-context.js';
import {registerJob} from '../registry.js';

export type MetaSaveParams = {
	path: string;
	/** The complete new metadata (every key the file should have). */
	metadata: Record<string, string>;
	/** Size and mtime of the file when its metadata was read. */
	expected: ReadStamp;
	/** Keep the replaced file as `<name>.bak`. */
	backup?: boolean;
	/** sha256 of the data area when already known for this same size + mtime (the hash job). */
	knownDataSha256?: string;
};

export type MetaSaveResult = {
	path: string;
	backupPath: string | null;
	sizeBytes: number;
	mtimeMs: number;
	dataSha256: string;
	/** True when sshs_model_hash / sshs_legacy_hash were recomputed. */
	hashesRecomputed: boolean;
};

declare module '../protocol.js' {
	interface JobKinds {
		'meta-save': {params: MetaSaveParams; result: MetaSaveResult};
	}
}

async function metaSaveJob(params: MetaSaveParams, ctx: JobContext): Promise<MetaSaveResult> {
	const result = await saveMetadata(params.path, params.metadata, {
		expected: params.expected,
		backup: params.backup,
		knownDataSha256: params.knownDataSha256,
		signal: ctx.signal,
		onProgress(progress) {
			ctx.progress(progress.done, progress.total, progress.label, progress.done);
		},
	});
	return {
		path: result.path,
		backupPath: result.backupPath,
		sizeBytes: result.sizeBytes,
		mtimeMs: result.mtimeMs,
		dataSha256: result.dataSha256,
		hashesRecomputed: result.hashes !== null,
	};
}

registerJob('meta-save', metaSaveJob);
