"""Sequential revisions: self-refinement (draft, critique, revise)."""
