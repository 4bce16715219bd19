"""Unlearning for NCF models (GMF, MLP, NeuMF): retrain, fine-tune, AltEraser and influence.

One module per concept, each registering its methods with :mod:`recforget.unlearn.registry`:

* :mod:`~recforget.unlearn.ncf.transplant`: the warm start (the original on the remaining data);
* :mod:`~recforget.unlearn.ncf.sample`: what a deletion changes in the fixed sample, and the
  gradient of that change (the anchored objective's linear term);
* :mod:`~recforget.unlearn.ncf.solvers`: the sub-problem solvers (batched block Newton,
  L-BFGS, Hessian-vector products and CG);
* :mod:`~recforget.unlearn.ncf.update`: AltEraser's one-step update from the prepared
  curvature (:func:`prepare`);
* :mod:`~recforget.unlearn.ncf.alteraser`: the ``"alteraser"`` method;
* :mod:`~recforget.unlearn.ncf.influence`: the ``"influence"`` baseline;
* :mod:`~recforget.unlearn.ncf.baselines`: ``"retrain"`` (the oracle) and ``"finetune"``.

The objective they minimise, its certificate and the curvature's data type belong to the model
(:mod:`recforget.models._ncf_objective`, :mod:`recforget.models._ncf_curvature`).
"""

from recforget.unlearn.ncf.alteraser import alteraser
from recforget.unlearn.ncf.baselines import finetune, retrain
from recforget.unlearn.ncf.influence import influence
from recforget.unlearn.ncf.transplant import transplant
from recforget.unlearn.ncf.update import prepare

__all__ = ["alteraser", "finetune", "influence", "prepare", "retrain", "transplant"]
