# Short entry point: UperNet 160k with QnA-ViT-T on ADE20K (512x512).
_base_ = './qnavit-t_upernet_8xb2-160k_ade20k-512x512.py'
