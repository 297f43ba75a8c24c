# Short entry point: UperNet 160k on ADE20K 512x512 with DilateFormer-S.
_base_ = './dilateformer-s_upernet_8xb2-160k_ade20k-512x512.py'
