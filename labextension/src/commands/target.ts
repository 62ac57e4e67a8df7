/**
 * A command about one conversation (its `id` argument, the list row under the context
 * menu, or the current view): enabled when there is one, and its failure reported where
 * the user looks (ctx.report).
 */
import { ReadonlyPartialJSONObject } from '@lumino/coreutils';

import { IConvoContext } from '../tokens';

type Args = ReadonlyPartialJSONObject;

export interface ITargetCommand {
  label: string | ((args: Args) => string);
  caption?: string;
  /** What the report says when `run` fails ("Could not stop the conversation"). */
  failure: string;
  /** Turn an error into what the user reads (e.g. a route this server lacks). */
  explain?: (error: unknown) => unknown;
  /** Enabled when there is a target and this says so (default: always). */
  isEnabled?: (id: string) => boolean;
  run: (id: string, args: Args) => Promise<void>;
}

export function addTargetCommand(
  ctx: IConvoContext,
  command: string,
  spec: ITargetCommand
): void {
  ctx.app.commands.addCommand(command, {
    label: spec.label,
    caption: spec.caption,
    isEnabled: args => {
      const id = ctx.targetId(args);
      return id !== null && (spec.isEnabled?.(id) ?? true);
    },
    execute: async args => {
      const id = ctx.targetId(args);
      if (!id) {
        return;
      }
      try {
        await spec.run(id, args);
      } catch (error) {
        ctx.report(
          spec.failure,
          id,
          spec.explain ? spec.explain(error) : error
        );
      }
    }
  });
}
