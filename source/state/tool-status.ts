// What the status line shows for the tools: a confirmation question, the resize parameter being
// typed, or the progress of a tools job (save, hashes; decompose, base norms and write when their
// view is not on screen) with MB/s and ETA. Undefined when the dashboard's own status line applies (a message,
// the filter input, a statistics job).
import path from 'node:path';
import {progressBar} from './glyphs.js';
import {seg, type Segment} from './lines.js';
import {allSlots, screenView} from './reducer-tools.js';
import {rateText} from './resize-lines.js';
import {paramKindOf, stepHint} from './resize-preview.js';
import {runningJobs, topView} from './selectors.js';
import {clean, truncate} from './text.js';
import type {AppState} from './types.js';

export function toolStatusSegments(state: AppState, width: number): Segment[] | undefined {
	const {env} = state;
	const top = topView(state);
	const {confirm, edit} = state.tools;
	if (top === 'confirm' && confirm) {
		return [seg(clean(confirm.prompt, env, 600), 'warn')];
	}

	if (top === 'edit-value' && edit?.mode === 'resize-param') {
		const session = state.tools.resize;
		const hint = `  ↵ applies · esc cancels · ${stepHint(session ? paramKindOf(session) : 'rank').split('  ')[0] ?? ''}`;
		return [seg(`${clean(edit.key, env, 40)} = `, 'accent'), seg(clean(edit.text, env, Math.max(10, width - 40))), seg(env.unicode ? '▏' : '_'), seg(hint, 'dim')];
	}

	if (state.status || state.input || runningJobs(state).length > 0) {
		return undefined;
	}

	const onScreen = screenView(state) === 'resize';
	const slot = allSlots(state.tools).find(s => (s.state === 'running' || s.state === 'queued' || s.state === 'cancelling') && !(onScreen && (s.kind === 'decompose' || s.kind === 'base-norms' || s.kind === 'resize-write')));
	if (!slot) {
		return undefined;
	}

	const file = 'path' in slot ? slot.path : 'target' in slot ? slot.target : '';
	const verb = {decompose: 'decomposing', 'base-norms': 'base norms for', hash: 'hashing', 'resize-write': 'writing', 'meta-save': 'saving metadata of'}[slot.kind];
	const done = slot.progress?.done ?? 0;
	const total = slot.progress?.total ?? 0;
	const barWidth = Math.min(30, Math.max(8, Math.floor(width / 4)));
	const rate = rateText(slot.progress);
	const percent = total > 0 ? ` ${Math.floor((100 * done) / total)}%` : '';
	return [
		seg(`${truncate(`${verb} ${clean(path.basename(file), env, 200)}`, Math.max(10, width - barWidth - 30), env)} `),
		seg(progressBar(done, total, barWidth, env), 'accent'),
		seg(percent, 'dim'),
		seg(rate === '' ? '' : `  ${rate}`, 'dim'),
	];
}
