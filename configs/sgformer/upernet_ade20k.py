# Short entry point: UperNet 160k with SG-Former-S on ADE20K (512x512).
_base_ = './sgformer-s_upernet_8xb2-160k_ade20k-512x512.py'
