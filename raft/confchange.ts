/**
 * Membership changes by joint consensus (Raft §6 / thesis §4.3), in the style of etcd's
 * confchange.Changer: a non-empty {@link ConfChange} enters C(old,new); an empty one leaves it.
 * A configuration without voters (a brand-new node) takes the change directly (bootstrap).
 *
 * The functions work on copies and throw {@link InvalidConfChangeError} without side effects.
 *
 * @module
 */
import { InvalidConfChangeError } from "./errors.ts";
import { cloneConfig, Progress, type TrackerConfig } from "./tracker.ts";
import { type ConfChange, ConfChangeType, type NodeId } from "./types.ts";

/** The result of a change: the new configuration and the progress map to use with it. */
export interface ChangeResult {
  config: TrackerConfig;
  progress: Map<NodeId, Progress>;
}

/** Parameters for creating progress records of new members. */
export interface ChangeParams {
  lastIndex: number;
  maxInflight: number;
  maxInflightBytes: number;
}

/** Applies a ConfChange to a configuration (enter joint, leave joint or bootstrap). */
export function applyChange(
  cfg: TrackerConfig,
  progress: Map<NodeId, Progress>,
  cc: ConfChange,
  p: ChangeParams,
): ChangeResult {
  const config = cloneConfig(cfg);
  const prs = new Map(progress);
  const joint = config.outgoing.size > 0;
  if (config.voters.size === 0 && !joint) {
    // Bootstrap: apply directly.
    if (cc.changes.length === 0) throw new InvalidConfChangeError("empty change on empty config");
    applySingles(config, prs, cc, p, false);
  } else if (cc.changes.length === 0) {
    if (!joint) throw new InvalidConfChangeError("not in a joint configuration");
    for (const id of config.learnersNext) {
      config.learners.add(id);
    }
    config.learnersNext.clear();
    for (const id of config.outgoing) {
      if (!config.voters.has(id) && !config.learners.has(id)) prs.delete(id);
    }
    config.outgoing.clear();
  } else {
    if (joint) throw new InvalidConfChangeError("configuration is already joint");
    config.outgoing = new Set(config.voters);
    applySingles(config, prs, cc, p, true);
  }
  if (config.voters.size === 0) throw new InvalidConfChangeError("removed all voters");
  for (const id of config.learners) {
    if (config.voters.has(id) || config.outgoing.has(id)) {
      throw new InvalidConfChangeError(`node ${id} is both learner and voter`);
    }
  }
  // Progress isLearner must reflect the config.
  for (const [id, pr] of prs) {
    const learner = !config.voters.has(id) && !config.outgoing.has(id);
    if (pr.isLearner !== learner) {
      const np = cloneProgress(pr);
      np.isLearner = learner;
      prs.set(id, np);
    }
  }
  return { config, progress: prs };
}

function cloneProgress(pr: Progress): Progress {
  const np = Object.create(Progress.prototype) as Progress;
  Object.assign(np, pr);
  return np;
}

function applySingles(
  config: TrackerConfig,
  prs: Map<NodeId, Progress>,
  cc: ConfChange,
  p: ChangeParams,
  joint: boolean,
): void {
  const init = (id: NodeId, learner: boolean) => {
    if (prs.has(id)) return;
    const pr = new Progress(Math.max(p.lastIndex, 1), p.maxInflight, p.maxInflightBytes, learner);
    pr.recentActive = true;
    prs.set(id, pr);
  };
  for (const c of cc.changes) {
    const id = c.nodeId;
    if (!Number.isSafeInteger(id) || id <= 0) throw new InvalidConfChangeError(`bad node id ${id}`);
    switch (c.type) {
      case ConfChangeType.AddNode:
        config.learners.delete(id);
        config.learnersNext.delete(id);
        config.voters.add(id);
        init(id, false);
        break;
      case ConfChangeType.AddLearner:
        if (config.learners.has(id)) break;
        config.voters.delete(id);
        if (joint && config.outgoing.has(id)) config.learnersNext.add(id);
        else config.learners.add(id);
        init(id, true);
        break;
      case ConfChangeType.RemoveNode:
        config.voters.delete(id);
        config.learners.delete(id);
        config.learnersNext.delete(id);
        if (!config.outgoing.has(id)) prs.delete(id);
        break;
      default:
        throw new InvalidConfChangeError(`unknown change type ${c.type}`);
    }
  }
}
