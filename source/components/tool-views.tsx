// Full-body views of the tools: the Resize view (a fixed head with the method, parameter, progress and
// outcome; a scrolling body with the per-block bars, worst modules and rank histogram) and the metadata
// editor. Presentational: the lines come from state/resize-lines.ts and state/edit-lines.ts.
import path from 'node:path';
import {Box} from 'ink';
import {editLines} from '../state/edit-lines.js';
import {glyphs} from '../state/glyphs.js';
import {line, seg} from '../state/lines.js';
import {resizeBodyRows, resizeLines} from '../state/resize-lines.js';
import type {AppState} from '../state/types.js';
import {LineRow, LineView} from './line-view.js';
import {borderColor} from './theme.js';

export function ResizeView({state, width, height}: {state: AppState; width: number; height: number}) {
	const {env} = state;
	const inner = Math.max(0, width - 2);
	const {head, body} = resizeLines(state, inner);
	const rows = resizeBodyRows(height, head.length);
	const g = glyphs(env);
	return (
		<Box flexDirection="column" width={width} height={height} borderStyle={g.borderStyle} borderColor={borderColor(true, env)} overflow="hidden">
			<LineView lines={head} scroll={0} rows={head.length} width={inner} env={env} />
			<LineRow line={line([seg(g.rule.repeat(inner), 'dim')])} env={env} width={inner} highlighted={false} />
			<LineView lines={body} scroll={state.tools.resize?.scroll ?? 0} rows={rows} width={inner} env={env} />
		</Box>
	);
}

export function EditPanel({state, width, height}: {state: AppState; width: number; height: number}) {
	const {env} = state;
	const {edit} = state.tools;
	const inner = Math.max(0, width - 2);
	const rows = Math.max(1, height - 3);
	const content = edit ? editLines(edit, path.basename(edit.path), inner, rows, env) : {title: '', lines: []};
	return (
		<Box flexDirection="column" width={width} height={height} borderStyle={glyphs(env).borderStyle} borderColor={borderColor(true, env)} overflow="hidden">
			<LineRow line={line([seg(content.title, 'heading')])} env={env} width={inner} highlighted={false} />
			<LineView lines={content.lines} scroll={0} rows={rows} width={inner} env={env} />
		</Box>
	);
}
