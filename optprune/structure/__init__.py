"""Structure analysis of torch models: the traced graph, dependency groups, units and attention heads.

The neutral layer below :mod:`optprune.scoring`, :mod:`optprune.search` and
:mod:`optprune.pruning`: :func:`dependency_groups` traces a model with
``torch.fx`` into :class:`Group` objects (structures removed together), whose
:class:`Member` slices :func:`member_tensors` / :func:`unit_view` read unit by
unit; :class:`MultiHeadSelfAttention` is the attention block whose heads are
one group; :func:`masked` runs a model with units masked at their consumers.
"""

from optprune.structure._attention import MultiHeadSelfAttention
from optprune.structure._graph import SUPPORTED, Group, Member, dependency_groups, infer_input_shape
from optprune.structure._mask import masked
from optprune.structure._units import PARAM_AXES, member_tensors, param_axes, unit_view

__all__ = [
    "PARAM_AXES",
    "SUPPORTED",
    "Group",
    "Member",
    "MultiHeadSelfAttention",
    "dependency_groups",
    "infer_input_shape",
    "masked",
    "member_tensors",
    "param_axes",
    "unit_view",
]
