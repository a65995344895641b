// The Overview tab's Hashes section: full-file SHA-256, Civitai's AutoV2, the tensor-data hash and
// whether the stored sd-scripts hashes match, computed by the engine's 'hash' job on `H` (a full read
// of the file, so never automatically) and cached per file version while the app runs.
import type {FileHashes, HashStatus} from '../lora/hashes.js';
import {glyphs, progressBar} from './glyphs.js';
import {line, seg, type Line, type Role} from './lines.js';
import {rateText} from './resize-lines.js';
import {clean, fit} from './text.js';
import type {HashSlot} from './tools-types.js';
import type {TerminalEnv} from './types.js';

const labelWidth = 22;
const hexLength = 64;

const statusWords: Readonly<Record<HashStatus, {text: string; role: Role}>> = {
	verified: {text: 'verified (matches the tensor data)', role: 'ok'},
	stale: {text: 'stale', role: 'warn'},
	absent: {text: 'absent', role: 'dim'},
	bogus: {text: 'bogus (the sha256 of nothing)', role: 'warn'},
};

function hashField(key: string, label: string, value: string, hint: string, width: number, env: TerminalEnv, role: Role = 'value'): Line[] {
	const head = seg(fit(label, labelWidth, env), 'label');
	if (labelWidth + 1 + value.length <= width || !/^[\da-f]+$/.test(value) || value.length < hexLength) {
		return [line([head, seg(' '), seg(value, role)], key, hint)];
	}

	// A 64-digit hash does not fit beside its label in a narrow pane: it goes under it, whole, on as
	// few lines as it needs (never cut with an ellipsis: users copy it).
	const room = Math.max(16, width - 2);
	const pieces: Line[] = [line([head], key, hint)];
	for (let start = 0; start < value.length; start += room) {
		pieces.push(line([seg('  '), seg(value.slice(start, start + room), role)], key, hint));
	}

	return pieces;
}

function storedStatus(status: HashStatus, stored: string | null, env: TerminalEnv): {text: string; role: Role} {
	const word = statusWords[status];
	if (status === 'stale' && stored) {
		return {text: `${word.text} (stored ${clean(stored, env, 12)}${stored.length > 12 ? glyphs(env).ellipsis : ''}, not the data's)`, role: word.role};
	}

	return word;
}

function resultLines(hashes: FileHashes, width: number, env: TerminalEnv): Line[] {
	const model = storedStatus(hashes.modelHashStatus, hashes.storedModelHash, env);
	const legacy = storedStatus(hashes.legacyHashStatus, hashes.storedLegacyHash, env);
	return [
		...hashField('hash:sha256', 'SHA-256 (whole file)', hashes.sha256, 'sha256 of the whole file: what `sha256sum` prints.', width, env),
		...hashField('hash:autov2', 'AutoV2', hashes.autov2, 'Civitai\'s short hash: the first 10 hex digits of the SHA-256; search it on civitai.com.', width, env, 'accent'),
		...hashField('hash:data', 'Tensor data', hashes.dataSha256, 'sha256 of the bytes after the header: what sshs_model_hash should hold (metadata edits do not change it).', width, env),
		...hashField('hash:sshs-model', 'sshs_model_hash', model.text, 'The tensor-data hash kohya sd-scripts stored: verified, stale (the tensors changed after it was stored), absent, or bogus (a tool stored the hash of nothing).', width, env, model.role),
		...hashField('hash:sshs-legacy', 'sshs_legacy_hash', legacy.text, 'sd-scripts\' older short hash (8 hex of a 64 KiB window at 1 MiB).', width, env, legacy.role),
	];
}

/** The section's lines for one file's hash slot (undefined: not computed yet). */
export function hashLines(slot: HashSlot | undefined, width: number, env: TerminalEnv): Line[] {
	const heading = line([seg('Hashes', 'heading'), seg('  H computes them (reads the whole file)', 'dim')]);
	const hint = 'H computes SHA-256, AutoV2, the tensor-data hash and checks the stored sshs hashes.';
	if (!slot) {
		return [heading, line([seg(fit('Status', labelWidth, env), 'label'), seg(' '), seg('not computed: press H', 'dim')], 'hash:none', hint)];
	}

	switch (slot.state) {
		case 'queued':
		case 'running':
		case 'cancelling': {
			const done = slot.progress?.done ?? 0;
			const total = slot.progress?.total ?? 0;
			const percent = total > 0 ? `${Math.floor((100 * done) / total)}%` : 'starting';
			const rate = rateText(slot.progress);
			return [
				heading,
				line(
					[seg(fit('Hashing', labelWidth, env), 'label'), seg(' '), seg(progressBar(done, total, Math.min(24, Math.max(8, width - labelWidth - 30)), env), 'accent'), seg(` ${percent}`), seg(rate === '' ? '' : `  ${rate}`, 'dim')],
					'hash:progress',
					hint,
				),
			];
		}

		case 'error': {
			return [heading, line([seg(fit('Status', labelWidth, env), 'label'), seg(' '), seg(`failed: ${clean(slot.error ?? 'unknown error', env, 300)}`, 'error')], 'hash:error', hint)];
		}

		case 'cancelled': {
			return [heading, line([seg(fit('Status', labelWidth, env), 'label'), seg(' '), seg('cancelled: press H again', 'warn')], 'hash:cancelled', hint)];
		}

		case 'done': {
			return slot.result ? [heading, ...resultLines(slot.result, width, env)] : [heading];
		}
	}
}

/** Overview lines with the Hashes section after the "Hashes in metadata" field (or at the end). */
export function withHashSection(lines: readonly Line[], slot: HashSlot | undefined, width: number, env: TerminalEnv): Line[] {
	const section = hashLines(slot, width, env);
	const index = lines.findIndex(l => l.key === 'field:hashes');
	if (index < 0) {
		return [...lines, {segments: []}, ...section];
	}

	return [...lines.slice(0, index + 1), {segments: []}, ...section, ...lines.slice(index + 1)];
}
