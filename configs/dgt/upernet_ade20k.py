# Short entry point: UperNet 160k with the DGT-style tiny backbone on ADE20K (512x512).
# DGT-style: the hyper-parameters are this project's choice; no paper number is reproduced.
_base_ = './dgt-t_upernet_8xb2-160k_ade20k-512x512.py'
