"""alignrec_model: the MMEnc encoder, the AlignRec recommender and their evaluations."""
